//! Scores a signed bundle on a labelled CSV file: the control plane runs this to compare
//! a retrained candidate with the version in service on the same held-out data.

use std::path::Path;

use edgewise_core::bundle::Bundle;
use edgewise_model::ModelError;
use edgewise_model::device::Candidate;
use edgewise_model::predictor::Predictor;
use serde::Serialize;
use thiserror::Error;

use crate::data::{self, DataError, DataOptions, LabelColumn};
use crate::metrics;

/// Rows predicted per batch.
const BATCH: usize = 256;

/// How a bundle did on a data file.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: u64,
    /// Labelled rows scored.
    pub examples: usize,
    /// Share predicted right.
    pub accuracy: f64,
    /// Macro-averaged F1 over the model's classes.
    pub macro_f1: f64,
}

/// Why a bundle could not be scored.
#[derive(Debug, Error)]
pub enum EvaluateError {
    /// The bundle could not be read.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model could not run.
    #[error("model: {0}")]
    Model(#[from] ModelError),
}

/// Scores `bundle` on `rows` (all when `None`) of `data_path`, label column `label`,
/// reading the model's features by name.
pub fn score(
    bundle: &[u8],
    data_path: &Path,
    label: LabelColumn,
    rows: Option<std::ops::Range<usize>>,
) -> Result<Score, EvaluateError> {
    let bundle = Bundle::open(bundle).map_err(|e| EvaluateError::Bundle(e.to_string()))?;
    let manifest = &bundle.manifest;
    let dataset = data::load(
        data_path,
        &DataOptions {
            label,
            features: manifest.input.features.clone(),
            rows,
        },
    )?;
    let predictor = Predictor::on_device(manifest, &bundle.weights, Candidate::cpu())?;
    let classes = manifest.output.labels.len();
    // The data file's class order need not be the model's: compare by label text.
    let truth: Vec<usize> = dataset
        .labels
        .iter()
        .map(|&index| {
            let name = &dataset.class_names[index];
            manifest
                .output
                .labels
                .iter()
                .position(|label| label == name)
                .unwrap_or(classes)
        })
        .collect();
    let mut predicted = Vec::with_capacity(dataset.rows.len());
    for rows in dataset.rows.chunks(BATCH) {
        let inputs: Vec<f32> = rows.iter().flatten().copied().collect();
        let probabilities = predictor.predict(&inputs, rows.len())?;
        predicted.extend(probabilities.chunks(classes.max(1)).map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(index, _)| index)
        }));
    }
    let evaluation = metrics::evaluate(&truth, &predicted, classes);
    Ok(Score {
        model: manifest.name.clone(),
        version: manifest.version,
        examples: truth.len(),
        accuracy: evaluation.accuracy,
        macro_f1: evaluation.macro_f1,
    })
}
