//! `edgewise-train train` from data file to signed bundle: read, split, standardise,
//! train, evaluate, profile, write self-test vectors, sign.

use std::path::PathBuf;
use std::time::SystemTime;

use burn::tensor::{Device, Tensor, TensorData};
use edgewise_core::bundle::{self, BundleError};
use edgewise_core::keys::SecretKey;
use edgewise_core::manifest::{
    Hyperparameters, InputSchema, Lineage, MANIFEST_FORMAT, Manifest, Metrics, OutputSchema,
    SelfTest, WeightsRef,
};
use edgewise_core::profile::{DataProfile, ProfileError, ProfileOptions};
use edgewise_core::spec::ModelSpec;
use edgewise_model::{ModelError, weights};
use indicatif::ProgressBar;
use thiserror::Error;

use crate::data::{self, DataError, DataOptions, Dataset};
use crate::metrics::evaluate;
use crate::split::{examples, fit_normalization, split};
use crate::trainer::{TrainConfig, predict_classes, train};

/// Number of held-out examples written as self-test vectors.
pub const SELF_TEST_EXAMPLES: usize = 8;
/// Largest difference a node may see from the self-test's expected probabilities
/// (covers GPU against CPU arithmetic).
pub const SELF_TEST_TOLERANCE: f32 = 1e-4;

/// Everything `train` needs.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The CSV or CSV.gz file.
    pub data: PathBuf,
    /// Label, feature and row choices.
    pub data_options: DataOptions,
    /// The network.
    pub spec: ModelSpec,
    /// Model name for the manifest.
    pub name: String,
    /// Model version for the manifest.
    pub version: u64,
    /// Training settings.
    pub config: TrainConfig,
    /// Share of rows for validation.
    pub validation_fraction: f64,
    /// Share of rows for the test report.
    pub test_fraction: f64,
    /// Source revision to record in the lineage.
    pub source_revision: Option<String>,
    /// The training job to record in the lineage.
    pub training_job: Option<String>,
    /// The parent version to record in the lineage.
    pub parent_version: Option<u64>,
}

/// A trained, signed model.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The bundle file's bytes.
    pub bundle: Vec<u8>,
}

/// Why training did not produce a bundle.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The request's settings are out of range.
    #[error("{0}")]
    Request(String),
    /// The data does not fit the spec.
    #[error("the spec does not fit the data: {0}")]
    Mismatch(String),
    /// Model building or running failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The profile could not be fitted.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Signing or packing failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Runs the whole pipeline and returns the signed bundle.
pub fn run(
    request: &TrainRequest,
    key: &SecretKey,
    progress: &ProgressBar,
) -> Result<TrainOutcome, TrainError> {
    check_request(request)?;
    let dataset = data::load(&request.data, &request.data_options)?;
    check_fit(&request.spec, &dataset)?;
    let seed = request.config.seed;
    let parts = split(
        dataset.rows.len(),
        request.validation_fraction,
        request.test_fraction,
        seed,
    );
    let normalization = fit_normalization(&dataset, &parts.train);
    let train_set = examples(&dataset, &parts.train, &normalization);
    let validation_set = examples(&dataset, &parts.validation, &normalization);
    let test_set = examples(&dataset, &parts.test, &normalization);

    let trained = train(
        &request.spec,
        &train_set,
        &validation_set,
        &request.config,
        progress,
    )?;
    let evaluation = evaluate(
        &test_set.labels,
        &predict_classes(&trained.network, &test_set)?,
        dataset.class_names.len(),
    );
    let weight_bytes = weights::to_bytes(&trained.network)?;
    let self_test = self_test(
        &request.spec,
        &weight_bytes,
        &dataset,
        &parts.test,
        &normalization,
    )?;
    let profile = fit_profile(&dataset, &parts.train, seed)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: request.name.clone(),
        version: request.version,
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        spec: request.spec.clone(),
        input: InputSchema {
            features: dataset.feature_names.clone(),
            shape: request.spec.input_shape.clone(),
            datatype: "FP32".to_string(),
            normalization,
        },
        output: OutputSchema {
            labels: dataset.class_names.clone(),
        },
        weights: WeightsRef {
            file: "weights.bpk".to_string(),
            format: weights::WEIGHTS_FORMAT.to_string(),
            sha256: String::new(),
            size: 0,
        },
        profile,
        self_test,
        lineage: Lineage {
            dataset_sha256: dataset.sha256.clone(),
            dataset: dataset.source.clone(),
            rows: dataset.rows.len(),
            hyperparameters: Hyperparameters {
                epochs: request.config.epochs,
                batch_size: request.config.batch_size,
                learning_rate: request.config.learning_rate,
                seed,
                patience: request.config.patience,
                validation_fraction: request.validation_fraction,
                test_fraction: request.test_fraction,
            },
            metrics: Metrics {
                test_accuracy: evaluation.accuracy,
                macro_f1: evaluation.macro_f1,
                validation_accuracy: trained.validation_accuracy,
                confusion_matrix: evaluation.confusion,
                epoch_losses: trained.epoch_losses,
                best_epoch: trained.best_epoch,
            },
            source_revision: request.source_revision.clone(),
            training_job: request.training_job.clone(),
            parent_version: request.parent_version,
        },
        signer_key_id: String::new(),
    };
    let bundle = bundle::pack(&manifest, &weight_bytes, key)?;
    let signed = bundle::Bundle::open(&bundle)?.manifest;
    Ok(TrainOutcome {
        manifest: signed,
        bundle,
    })
}

fn check_request(request: &TrainRequest) -> Result<(), TrainError> {
    let name_ok = !request.name.is_empty()
        && !request.name.starts_with('.')
        && request
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(TrainError::Request(format!(
            "name {:?} must be letters, digits, '_', '-' or '.', not starting with '.'",
            request.name
        )));
    }
    let (validation, test) = (request.validation_fraction, request.test_fraction);
    let fraction_ok = |f: f64| f > 0.0 && f < 1.0;
    if !fraction_ok(validation) || !fraction_ok(test) || validation + test >= 0.9 {
        return Err(TrainError::Request(format!(
            "validation_fraction ({validation}) and test_fraction ({test}) must each be above 0 and leave at least 10% of rows to train on"
        )));
    }
    if request.config.epochs == 0 || request.config.batch_size == 0 {
        return Err(TrainError::Request(
            "epochs and batch_size must be at least 1".to_string(),
        ));
    }
    Ok(())
}

fn check_fit(spec: &ModelSpec, dataset: &Dataset) -> Result<(), TrainError> {
    let features = dataset.feature_names.len();
    if spec.input_len() != features {
        return Err(TrainError::Mismatch(format!(
            "input_shape {:?} takes {} values, but the data has {features} feature columns",
            spec.input_shape,
            spec.input_len()
        )));
    }
    let outputs = spec.output_len().map_err(ModelError::from)?;
    let classes = dataset.class_names.len();
    if outputs != classes {
        return Err(TrainError::Mismatch(format!(
            "the network ends in {outputs} outputs, but the data has {classes} classes {:?}",
            dataset.class_names
        )));
    }
    Ok(())
}

/// Self-test vectors: the first held-out rows, and the probabilities that the saved
/// weights give for them on the CPU.
fn self_test(
    spec: &ModelSpec,
    weight_bytes: &[u8],
    dataset: &Dataset,
    test_rows: &[usize],
    normalization: &edgewise_core::manifest::Normalization,
) -> Result<SelfTest, TrainError> {
    let rows = &test_rows[..test_rows.len().min(SELF_TEST_EXAMPLES)];
    let device = Device::flex();
    let network = weights::load(spec, weight_bytes, &device)?;
    let chosen = examples(dataset, rows, normalization);
    let input = Tensor::<2>::from_data(
        TensorData::new(chosen.inputs, [rows.len(), chosen.width]),
        &device,
    );
    let probabilities = network
        .predict_probabilities(input)
        .try_into_data()
        .map_err(|err| ModelError::Backend(format!("{err:?}")))?
        .try_to_vec::<f32>()
        .map_err(|err| ModelError::Backend(format!("{err:?}")))?;
    let classes = dataset.class_names.len();
    Ok(SelfTest {
        inputs: rows.iter().map(|&row| dataset.rows[row].clone()).collect(),
        expected_probabilities: probabilities.chunks(classes).map(<[f32]>::to_vec).collect(),
        tolerance: SELF_TEST_TOLERANCE,
    })
}

fn fit_profile(
    dataset: &Dataset,
    train_rows: &[usize],
    seed: u64,
) -> Result<DataProfile, TrainError> {
    let columns: Vec<Vec<f64>> = (0..dataset.feature_names.len())
        .map(|feature| {
            train_rows
                .iter()
                .map(|&row| f64::from(dataset.rows[row][feature]))
                .collect()
        })
        .collect();
    let labels: Vec<usize> = train_rows.iter().map(|&row| dataset.labels[row]).collect();
    let options = ProfileOptions {
        seed,
        ..ProfileOptions::default()
    };
    Ok(DataProfile::fit(
        &dataset.feature_names,
        &columns,
        &labels,
        dataset.class_names.len(),
        &options,
    )?)
}
