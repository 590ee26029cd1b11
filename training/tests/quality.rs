//! Training on the shipped data reaches the quality bars, and is reproducible.

use std::path::PathBuf;

use edgewise_core::keys::SecretKey;
use edgewise_core::manifest::Manifest;
use edgewise_core::spec::ModelSpec;
use edgewise_training::data::{DataOptions, LabelColumn};
use edgewise_training::pipeline::{TrainRequest, run};
use edgewise_training::trainer::TrainConfig;
use indicatif::ProgressBar;

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(file)
}

fn request(file: &str, preset: &str, epochs: usize) -> TrainRequest {
    TrainRequest {
        data: data(file),
        data_options: DataOptions {
            label: LabelColumn::Last,
            features: Vec::new(),
            rows: None,
        },
        spec: ModelSpec::preset(preset).expect("preset"),
        name: preset.to_string(),
        version: 1,
        config: TrainConfig {
            epochs,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 42,
            patience: 10,
        },
        validation_fraction: 0.1,
        test_fraction: 0.2,
        source_revision: None,
        training_job: None,
        parent_version: None,
    }
}

fn train(request: &TrainRequest) -> Manifest {
    run(request, &SecretKey::generate(), &ProgressBar::hidden())
        .expect("training succeeds")
        .manifest
}

#[test]
fn digits_mlp_reaches_the_quality_bar() {
    let manifest = train(&request("digits.csv.gz", "digits-mlp", 60));
    let metrics = &manifest.lineage.metrics;
    println!(
        "digits-mlp test accuracy {:.4}, macro-F1 {:.4}",
        metrics.test_accuracy, metrics.macro_f1
    );
    assert!(
        metrics.test_accuracy >= 0.96,
        "accuracy {}",
        metrics.test_accuracy
    );
    assert!(metrics.macro_f1 >= 0.95, "macro-F1 {}", metrics.macro_f1);
    let total: u64 = metrics.confusion_matrix.iter().flatten().sum();
    assert_eq!(total, 359, "the test split holds 20% of 1,797 rows");
    assert_eq!(manifest.profile.features.len(), 64);
    assert_eq!(manifest.self_test.inputs.len(), 8);
}

#[test]
fn rainfall_mlp_on_the_first_12000_rows_reaches_the_quality_bar() {
    let mut rainfall = request("rainfall.csv.gz", "rainfall-mlp", 40);
    rainfall.data_options.label = LabelColumn::Named("rain".to_string());
    rainfall.data_options.rows = Some(0..12_000);
    let manifest = train(&rainfall);
    let accuracy = manifest.lineage.metrics.test_accuracy;
    println!("rainfall-mlp test accuracy {accuracy:.4}");
    assert!(accuracy >= 0.80, "accuracy {accuracy}");
    assert_eq!(manifest.lineage.rows, 12_000);
    assert_eq!(manifest.input.features.len(), 8);
    assert_eq!(manifest.input.features[0], "temperature");
    assert_eq!(manifest.output.labels, vec!["0", "1"]);
}

#[test]
fn the_same_seed_and_data_give_the_same_weights() {
    let digits = request("digits.csv.gz", "digits-mlp", 4);
    let first = train(&digits);
    let second = train(&digits);
    assert_eq!(first.weights.sha256, second.weights.sha256);
    let mut other_seed = digits.clone();
    other_seed.config.seed = 7;
    assert_ne!(first.weights.sha256, train(&other_seed).weights.sha256);
}

#[test]
fn the_cnn_preset_trains() {
    let manifest = train(&request("digits.csv.gz", "digits-cnn", 3));
    assert!(manifest.lineage.metrics.test_accuracy > 0.5);
}

#[test]
fn a_spec_that_does_not_fit_the_data_is_refused() {
    let err = run(
        &request("digits.csv.gz", "rainfall-mlp", 1),
        &SecretKey::generate(),
        &ProgressBar::hidden(),
    )
    .expect_err("8 inputs cannot take 64 features");
    assert!(err.to_string().contains("64 feature columns"), "{err}");
}
