//! The bundle manifest: everything a node needs to know about one model version,
//! signed once by the release key. It names the weights' hash, so the one signature
//! covers the whole bundle.

use serde::{Deserialize, Serialize};

use crate::profile::DataProfile;
use crate::spec::ModelSpec;

/// The manifest format version written by this crate.
pub const MANIFEST_FORMAT: u32 = 1;

/// What one model version is, how to feed it, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version, so readers can refuse what they do not understand.
    pub format: u32,
    /// Model name, e.g. `digits`.
    pub name: String,
    /// Version number, increasing per model name.
    pub version: u64,
    /// When the bundle was made, RFC 3339 in UTC.
    pub created_at: String,
    /// The layers and shapes of the network.
    pub spec: ModelSpec,
    /// How requests must be shaped and how inputs are normalised before the network.
    pub input: InputSchema,
    /// What the network's outputs mean.
    pub output: OutputSchema,
    /// The weights file inside the bundle.
    pub weights: WeightsRef,
    /// Reference statistics of the training data, for drift detection.
    pub profile: DataProfile,
    /// Inputs with known outputs, run on every node before the model serves.
    pub self_test: SelfTest,
    /// How the model was trained and how well it did.
    pub lineage: Lineage,
    /// Key id of the release key that signs this manifest.
    pub signer_key_id: String,
}

/// Request schema of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSchema {
    /// One name per input feature, in column order.
    pub features: Vec<String>,
    /// Shape of one example, without the batch dimension (e.g. `[64]`).
    pub shape: Vec<usize>,
    /// Element type the network consumes (always `FP32` today).
    pub datatype: String,
    /// Per-feature standardisation applied before the network.
    pub normalization: Normalization,
}

/// Per-feature standardisation: `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean of each feature over the training split.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature over the training split (never zero).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Standardises one example in place; `values` holds one value per feature.
    pub fn apply(&self, values: &mut [f32]) {
        for ((value, mean), std) in values.iter_mut().zip(&self.mean).zip(&self.std) {
            *value = (*value - mean) / std;
        }
    }
}

/// What the outputs of a classifier mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSchema {
    /// Class labels in output order.
    pub labels: Vec<String>,
}

/// The weights file that the manifest covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsRef {
    /// File name inside the bundle.
    pub file: String,
    /// Storage format of the weights (a burn recorder's name).
    pub format: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
}

/// Known input/output pairs that a loaded model must reproduce before it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfTest {
    /// Raw (un-normalised) inputs, one row per example.
    pub inputs: Vec<Vec<f32>>,
    /// Expected class probabilities, one row per example.
    pub expected_probabilities: Vec<Vec<f32>>,
    /// Largest allowed absolute difference per probability.
    pub tolerance: f32,
}

/// Where a model version came from and how well it did on held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// sha256 of the training data file as read.
    pub dataset_sha256: String,
    /// Name of the data file.
    pub dataset: String,
    /// Rows used (after a row range was applied).
    pub rows: usize,
    /// Training settings.
    pub hyperparameters: Hyperparameters,
    /// Results on the held-out splits.
    pub metrics: Metrics,
    /// Source revision of the training code or data (e.g. a git commit), if known.
    pub source_revision: Option<String>,
    /// The control plane's training job that produced it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job: Option<String>,
    /// The version it was retrained from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<u64>,
}

/// Training settings recorded in the lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Seed for the split, the initial weights and the batch order.
    pub seed: u64,
    /// Epochs without validation improvement before training stops.
    pub patience: usize,
    /// Share of rows held out for validation.
    pub validation_fraction: f64,
    /// Share of rows held out for the final test.
    pub test_fraction: f64,
}

/// Evaluation results of a trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Macro-averaged F1 on the test split.
    pub macro_f1: f64,
    /// Best validation accuracy reached.
    pub validation_accuracy: f64,
    /// `confusion_matrix[true][predicted]` counts on the test split.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Mean training loss of each epoch run.
    pub epoch_losses: Vec<f64>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
}

/// Largest self-test tolerance a manifest may claim: a looser one would let a broken
/// model pass.
pub const MAX_SELF_TEST_TOLERANCE: f32 = 1e-2;

/// A manifest whose parts disagree with each other.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("manifest field {field}: {problem}")]
pub struct ManifestError {
    /// The field at fault, as a path (e.g. `input.normalization.std`).
    pub field: &'static str,
    /// What is wrong and what was expected.
    pub problem: String,
}

impl Manifest {
    /// Checks that the parts of the manifest agree: the spec is valid, the input
    /// schema, normalisation, labels and self-test fit its shapes, and the formats are
    /// ones this build reads.
    pub fn check(&self) -> Result<(), ManifestError> {
        let fail = |field: &'static str, problem: String| Err(ManifestError { field, problem });
        let classes = match self.spec.output_len() {
            Ok(classes) => classes,
            Err(err) => return fail("spec", err.to_string()),
        };
        let width = self.spec.input_len();
        if self.input.features.len() != width {
            return fail(
                "input.features",
                format!(
                    "holds {} names, the spec takes {width} values",
                    self.input.features.len()
                ),
            );
        }
        if self.input.shape != self.spec.input_shape {
            return fail(
                "input.shape",
                format!(
                    "is {:?}, the spec's input_shape is {:?}",
                    self.input.shape, self.spec.input_shape
                ),
            );
        }
        if self.input.datatype != "FP32" {
            return fail(
                "input.datatype",
                format!("must be FP32, got {:?}", self.input.datatype),
            );
        }
        let normalization = &self.input.normalization;
        if normalization.mean.len() != width || normalization.std.len() != width {
            return fail(
                "input.normalization",
                format!(
                    "mean and std must hold {width} values each, got {} and {}",
                    normalization.mean.len(),
                    normalization.std.len()
                ),
            );
        }
        if normalization.mean.iter().any(|mean| !mean.is_finite())
            || normalization
                .std
                .iter()
                .any(|std| !std.is_finite() || *std <= 0.0)
        {
            return fail(
                "input.normalization",
                "every mean must be finite and every std finite and above 0".to_string(),
            );
        }
        if self.output.labels.len() != classes {
            return fail(
                "output.labels",
                format!(
                    "holds {} labels, the network has {classes} outputs",
                    self.output.labels.len()
                ),
            );
        }
        self.check_self_test(width, classes)
    }

    fn check_self_test(&self, width: usize, classes: usize) -> Result<(), ManifestError> {
        let test = &self.self_test;
        let fail = |problem: String| {
            Err(ManifestError {
                field: "self_test",
                problem,
            })
        };
        if test.inputs.is_empty() {
            return fail("inputs must hold at least one example".to_string());
        }
        if test.expected_probabilities.len() != test.inputs.len() {
            return fail(format!(
                "expected_probabilities holds {} rows for {} inputs",
                test.expected_probabilities.len(),
                test.inputs.len()
            ));
        }
        if let Some(row) = test.inputs.iter().position(|row| row.len() != width) {
            return fail(format!("inputs[{row}] must hold {width} values"));
        }
        if let Some(row) = test
            .expected_probabilities
            .iter()
            .position(|row| row.len() != classes)
        {
            return fail(format!(
                "expected_probabilities[{row}] must hold {classes} values"
            ));
        }
        if !(test.tolerance.is_finite()
            && test.tolerance >= 0.0
            && test.tolerance <= MAX_SELF_TEST_TOLERANCE)
        {
            return fail(format!(
                "tolerance must be between 0 and {MAX_SELF_TEST_TOLERANCE}, got {}",
                test.tolerance
            ));
        }
        Ok(())
    }
}
