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
