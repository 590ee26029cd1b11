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
}

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
        Some(DenseNetwork {
            steps,
            inputs,
            classes,
            widest,
        })
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
                        let out = &mut next[..*outputs];
                        out.copy_from_slice(bias);
                        for (x, row) in current[..*inputs].iter().zip(weight.chunks_exact(*outputs))
                        {
                            for (y, w) in out.iter_mut().zip(row) {
                                *y += x * w;
                            }
                        }
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
