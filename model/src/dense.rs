//! The CPU fast path for small dense networks: fully connected layers with element-wise
//! activations, run as plain loops over weights copied out of the burn module once, at
//! load. For the models edge nodes serve (a few thousand weights), burn's fixed cost per
//! operation (tensor allocation, dispatch, read-back) is most of a batch-1 prediction;
//! this path computes the same function without it. Its outputs match burn's to 1e-5
//! (tested below), and the self-test checks them again at every load.

use serde::Serialize;

use crate::network::{Layer, Network};

/// One step of a dense network; serialised with an `op` tag, so other runtimes can
/// rebuild the network (`edgewise-train export`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Step {
    /// `y = x W + b`, with `W` row-major `[inputs][outputs]` as burn keeps it.
    Linear {
        weight: Vec<f32>,
        bias: Vec<f32>,
        inputs: usize,
        outputs: usize,
    },
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

/// A dense network's weights and steps, outside burn.
#[derive(Debug, Clone, Serialize)]
pub struct DenseNetwork {
    steps: Vec<Step>,
    inputs: usize,
    classes: usize,
    widest: usize,
    #[serde(skip)]
    multiply_adds: usize,
}

/// The most multiply-adds per batch for which this path beats burn's. Below it, burn's
/// fixed cost per operation dominates; above it, burn's matrix kernels (which block
/// over rows as these loops do not) pull ahead. Measured on the digits MLP (9,472
/// multiply-adds per example): the loops win up to a batch of about 24.
const MAX_MULTIPLY_ADDS: usize = 224 * 1024;

impl DenseNetwork {
    /// The dense form of `network`, or `None` when it holds a layer this path does not
    /// cover (convolution, pooling, reshape, batch norm, a softmax before the end).
    pub fn from_network(network: &Network) -> Option<Self> {
        let mut steps = Vec::new();
        let last = network.layers.len().checked_sub(1)?;
        for (index, layer) in network.layers.iter().enumerate() {
            match layer {
                Layer::Linear(linear) => {
                    let [inputs, outputs] = linear.weight.val().dims();
                    let weight = linear.weight.val().into_data().try_to_vec::<f32>().ok()?;
                    let bias = match &linear.bias {
                        Some(bias) => bias.val().into_data().try_to_vec::<f32>().ok()?,
                        None => vec![0.0; outputs],
                    };
                    steps.push(Step::Linear {
                        weight,
                        bias,
                        inputs,
                        outputs,
                    });
                }
                Layer::Relu(_) => steps.push(Step::Relu),
                Layer::Tanh(_) => steps.push(Step::Tanh),
                Layer::Sigmoid(_) => steps.push(Step::Sigmoid),
                // Dropout does nothing at inference.
                Layer::Dropout(_) => {}
                // The probabilities come from one softmax at the end, as in burn.
                Layer::Softmax(_) if index == last => {}
                _ => return None,
            }
        }
        let widths: Vec<usize> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Linear {
                    inputs, outputs, ..
                } => Some([*inputs, *outputs]),
                _ => None,
            })
            .flatten()
            .collect();
        let inputs = *widths.first()?;
        let classes = *widths.last()?;
        let widest = widths.iter().copied().max()?;
        let multiply_adds = widths.chunks_exact(2).map(|pair| pair[0] * pair[1]).sum();
        Some(DenseNetwork {
            steps,
            inputs,
            classes,
            widest,
            multiply_adds,
        })
    }

    /// Whether a batch of `batch` examples is faster here than on burn.
    pub fn suits(&self, batch: usize) -> bool {
        batch.saturating_mul(self.multiply_adds) <= MAX_MULTIPLY_ADDS
    }

    /// Class probabilities for `batch` normalised examples laid out row after row;
    /// returns `batch * classes` values.
    pub fn predict_probabilities(&self, inputs: &[f32], batch: usize) -> Vec<f32> {
        let mut output = Vec::with_capacity(batch * self.classes);
        let mut current = vec![0.0f32; self.widest];
        let mut next = vec![0.0f32; self.widest];
        for example in inputs.chunks_exact(self.inputs).take(batch) {
            current[..self.inputs].copy_from_slice(example);
            let mut width = self.inputs;
            for step in &self.steps {
                match step {
                    Step::Linear {
                        weight,
                        bias,
                        inputs,
                        outputs,
                    } => {
                        linear(&current[..*inputs], weight, bias, &mut next[..*outputs]);
                        std::mem::swap(&mut current, &mut next);
                        width = *outputs;
                    }
                    Step::Relu => current[..width].iter_mut().for_each(|x| *x = x.max(0.0)),
                    Step::Tanh => current[..width].iter_mut().for_each(|x| *x = x.tanh()),
                    Step::Sigmoid => current[..width]
                        .iter_mut()
                        .for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
                }
            }
            softmax_into(&current[..self.classes], &mut output);
        }
        output
    }
}

/// `out = bias + x W` for one example, with `W` row-major `[x.len()][out.len()]`. Uses
/// AVX2 where the CPU has it (the build targets baseline x86-64, SSE2 only); the sums
/// run in the same order either way, so both give the same bits.
fn linear(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { linear_avx2(x, weight, bias, out) };
    }
    linear_portable(x, weight, bias, out);
}

/// [`linear`] compiled for AVX2: the same loop, eight lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn linear_avx2(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    linear_portable(x, weight, bias, out);
}

/// [`linear`] for any CPU: a few outputs at a time, each summed over the inputs in
/// order, with the running sums in registers rather than going through memory.
#[inline(always)]
fn linear_portable(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let outputs = out.len();
    let mut start = 0;
    while start + 32 <= outputs {
        outputs_block::<32>(x, weight, bias, out, start);
        start += 32;
    }
    while start + 8 <= outputs {
        outputs_block::<8>(x, weight, bias, out, start);
        start += 8;
    }
    match outputs - start {
        1 => outputs_block::<1>(x, weight, bias, out, start),
        2 => outputs_block::<2>(x, weight, bias, out, start),
        3 => outputs_block::<3>(x, weight, bias, out, start),
        4 => outputs_block::<4>(x, weight, bias, out, start),
        5 => outputs_block::<5>(x, weight, bias, out, start),
        6 => outputs_block::<6>(x, weight, bias, out, start),
        7 => outputs_block::<7>(x, weight, bias, out, start),
        _ => {}
    }
}

/// Outputs `start..start + N` of [`linear`], their sums held in `N` registers' lanes.
#[inline(always)]
fn outputs_block<const N: usize>(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    start: usize,
) {
    let mut sums = [0.0f32; N];
    sums.copy_from_slice(&bias[start..start + N]);
    for (x, row) in x.iter().zip(weight.chunks_exact(out.len())) {
        let weights = &row[start..start + N];
        for k in 0..N {
            sums[k] += x * weights[k];
        }
    }
    out[start..start + N].copy_from_slice(&sums);
}

/// Appends the softmax of `logits` to `output` (shifted by the maximum, as burn does).
fn softmax_into(logits: &[f32], output: &mut Vec<f32>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let start = output.len();
    output.extend(logits.iter().map(|x| (x - max).exp()));
    let sum: f32 = output[start..].iter().sum();
    output[start..].iter_mut().for_each(|p| *p /= sum);
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};
    use edgewise_core::spec::{LayerSpec, ModelSpec};

    use super::DenseNetwork;
    use crate::network::Network;

    fn burn_probabilities(
        network: &Network,
        inputs: &[f32],
        batch: usize,
        width: usize,
    ) -> Vec<f32> {
        let device = Device::flex();
        let tensor =
            Tensor::<2>::from_data(TensorData::new(inputs.to_vec(), [batch, width]), &device);
        network
            .predict_probabilities(tensor)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    fn spec(layers: Vec<LayerSpec>, width: usize) -> ModelSpec {
        ModelSpec {
            input_shape: vec![width],
            layers,
        }
    }

    #[test]
    fn dense_networks_match_burn_to_1e_5() {
        use LayerSpec::*;
        let specs = [
            ModelSpec::preset("digits-mlp").expect("preset"),
            ModelSpec::preset("rainfall-mlp").expect("preset"),
            spec(
                vec![
                    Linear { out_features: 16 },
                    Tanh,
                    Dropout { prob: 0.5 },
                    Linear { out_features: 16 },
                    Sigmoid,
                    Linear { out_features: 3 },
                    Softmax,
                ],
                5,
            ),
        ];
        let device = Device::flex();
        device.seed(7);
        for spec in specs {
            let network = Network::new(&spec, &device).expect("network");
            let dense = DenseNetwork::from_network(&network).expect("dense");
            let width = spec.input_len();
            for batch in [1, 3, 64] {
                let inputs: Vec<f32> = (0..batch * width)
                    .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
                    .collect();
                let expected = burn_probabilities(&network, &inputs, batch, width);
                let got = dense.predict_probabilities(&inputs, batch);
                assert_eq!(got.len(), expected.len());
                let worst = got
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst <= 1e-5, "{spec:?} batch {batch}: off by {worst}");
            }
        }
    }

    #[test]
    fn convolutions_stay_on_burn() {
        let device = Device::flex();
        let spec = ModelSpec::preset("digits-cnn").expect("preset");
        let network = Network::new(&spec, &device).expect("network");
        assert!(DenseNetwork::from_network(&network).is_none());
    }
}
