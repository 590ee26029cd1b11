//! A loaded model ready to answer: the network on its device, the input
//! normalisation, and the self-test that must pass before it serves.

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor, TensorData};
use edgewise_core::manifest::{Manifest, Normalization, SelfTest};

use crate::ModelError;
use crate::dense::DenseNetwork;
use crate::device::{Candidate, DeviceChoice, candidates};
use crate::network::Network;
use crate::weights;

/// Largest batch `auto` times a device with.
const MAX_TIMING_BATCH: usize = 1024;

/// A model loaded on one device, answering batches of raw inputs with class
/// probabilities.
#[derive(Debug)]
pub struct Predictor {
    network: Network,
    /// The same network as plain loops, on the CPU when it is dense (see [`DenseNetwork`]).
    dense: Option<DenseNetwork>,
    device: Candidate,
    normalization: Normalization,
    input_len: usize,
    classes: usize,
}

/// How each candidate device did when `auto` timed them at load.
#[derive(Debug, Clone)]
pub struct DeviceTiming {
    /// The device, in words.
    pub description: String,
    /// Median time of one batch of the configured size.
    pub batch_latency: Duration,
}

impl Predictor {
    /// Loads the model of a (verified) manifest and its weights on the device that
    /// `choice` selects, runs the self-test, and returns it with the timings that
    /// `auto` measured (empty for `cpu` and `gpu`). `batch_size` is the batch the
    /// server will run, used for timing.
    pub fn load(
        manifest: &Manifest,
        weights: &[u8],
        choice: DeviceChoice,
        batch_size: usize,
    ) -> Result<(Self, Vec<DeviceTiming>), ModelError> {
        let candidates = candidates(choice)?;
        if candidates.len() == 1 {
            let predictor = Self::on_device(manifest, weights, candidates[0].clone())?;
            return Ok((predictor, Vec::new()));
        }
        let mut timed = Vec::new();
        for candidate in candidates {
            let description = candidate.description.clone();
            let attempt = Self::on_device(manifest, weights, candidate).and_then(|predictor| {
                let latency = predictor.time_batch(&manifest.self_test, batch_size)?;
                Ok((predictor, latency))
            });
            match attempt {
                Ok(pair) => timed.push(pair),
                // The CPU comes first: its failure is the bundle's fault, not the device's.
                Err(err) if timed.is_empty() => return Err(err),
                Err(err) => tracing::warn!(device = %description, %err, "device left out of auto"),
            }
        }
        let timings: Vec<DeviceTiming> = timed
            .iter()
            .map(|(predictor, latency)| DeviceTiming {
                description: predictor.device.description.clone(),
                batch_latency: *latency,
            })
            .collect();
        let fastest = timed
            .into_iter()
            .min_by_key(|(_, latency)| *latency)
            .map(|(predictor, _)| predictor)
            .ok_or_else(|| ModelError::Backend("no device to run on".to_string()))?;
        Ok((fastest, timings))
    }

    /// Loads the model on one given device and runs its self-test.
    pub fn on_device(
        manifest: &Manifest,
        weights: &[u8],
        device: Candidate,
    ) -> Result<Self, ModelError> {
        manifest.check()?;
        let network = weights::load(&manifest.spec, weights, &device.device)?;
        let dense = if device.is_gpu {
            None
        } else {
            DenseNetwork::from_network(&network)
        };
        let predictor = Predictor {
            network,
            dense,
            device,
            normalization: manifest.input.normalization.clone(),
            input_len: manifest.spec.input_len(),
            classes: manifest.spec.output_len()?,
        };
        predictor.self_test(&manifest.self_test)?;
        Ok(predictor)
    }

    /// The same predictor on burn's general path only, without the dense fast path
    /// (for measuring what the fast path gains).
    pub fn without_fast_path(mut self) -> Self {
        self.dense = None;
        self
    }

    /// Whether a batch of `batch` examples takes the dense fast path.
    pub fn uses_fast_path(&self, batch: usize) -> bool {
        self.dense.as_ref().is_some_and(|dense| dense.suits(batch))
    }

    /// The device this model runs on.
    pub fn device(&self) -> &Candidate {
        &self.device
    }

    /// Number of values in one input example.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Class probabilities for `inputs`, `batch` raw examples laid out row after row;
    /// returns `batch * classes` values, row after row.
    pub fn predict(&self, inputs: &[f32], batch: usize) -> Result<Vec<f32>, ModelError> {
        if batch == 0 || inputs.len() != batch * self.input_len {
            return Err(ModelError::InputShape {
                expected: self.input_len,
                got: inputs.len(),
                batch,
            });
        }
        let mut normalized = inputs.to_vec();
        for row in normalized.chunks_mut(self.input_len) {
            self.normalization.apply(row);
        }
        if let Some(dense) = self.dense.as_ref().filter(|dense| dense.suits(batch)) {
            return Ok(dense.predict_probabilities(&normalized, batch));
        }
        let input = to_tensor(normalized, batch, self.input_len, &self.device.device);
        let output = self.network.predict_probabilities(input);
        output
            .try_into_data()
            .map_err(|err| ModelError::Backend(format!("{err:?}")))?
            .try_to_vec::<f32>()
            .map_err(|err| ModelError::Backend(format!("{err:?}")))
    }

    /// Checks that the model reproduces the manifest's self-test outputs.
    pub fn self_test(&self, test: &SelfTest) -> Result<(), ModelError> {
        let batch = test.inputs.len();
        let inputs: Vec<f32> = test.inputs.iter().flatten().copied().collect();
        let outputs = self.predict(&inputs, batch)?;
        for (example, (expected, got)) in test
            .expected_probabilities
            .iter()
            .zip(outputs.chunks(self.classes))
            .enumerate()
        {
            for (class, (want, have)) in expected.iter().zip(got).enumerate() {
                let diff = (want - have).abs();
                // NaN fails too: it is not within any tolerance.
                if diff.is_nan() || diff > test.tolerance {
                    return Err(ModelError::SelfTestFailed {
                        example,
                        class,
                        expected: *want,
                        got: *have,
                        tolerance: test.tolerance,
                    });
                }
            }
        }
        Ok(())
    }

    /// Median time of one batch of `batch_size` examples built from the self-test.
    fn time_batch(&self, test: &SelfTest, batch_size: usize) -> Result<Duration, ModelError> {
        let examples: Vec<f32> = test
            .inputs
            .iter()
            .cycle()
            .take(batch_size.clamp(1, MAX_TIMING_BATCH))
            .flatten()
            .copied()
            .collect();
        let batch = examples.len() / self.input_len;
        let mut samples = Vec::new();
        for round in 0..13 {
            let start = Instant::now();
            self.predict(&examples, batch)?;
            if round >= 3 {
                samples.push(start.elapsed());
            }
        }
        samples.sort();
        Ok(samples[samples.len() / 2])
    }
}

fn to_tensor(values: Vec<f32>, batch: usize, width: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [batch, width]), device)
}
