//! Human-readable summaries of a manifest: the training report and `inspect`.

use std::fmt::Write;

use edgewise_core::manifest::Manifest;
use edgewise_core::spec::LayerSpec;

/// The evaluation report: test accuracy, macro-F1, confusion matrix, epoch losses.
pub fn training_report(manifest: &Manifest) -> String {
    let metrics = &manifest.lineage.metrics;
    let mut out = String::new();
    let _ = writeln!(out, "test accuracy   {:.4}", metrics.test_accuracy);
    let _ = writeln!(out, "macro-F1        {:.4}", metrics.macro_f1);
    let _ = writeln!(
        out,
        "validation acc  {:.4} (best epoch {} of {})",
        metrics.validation_accuracy,
        metrics.best_epoch,
        metrics.epoch_losses.len()
    );
    let _ = writeln!(out, "confusion matrix (rows: true, columns: predicted)");
    let labels = &manifest.output.labels;
    let width = labels.iter().map(String::len).max().unwrap_or(1).max(4);
    let _ = write!(out, "{:>width$} ", "");
    for label in labels {
        let _ = write!(out, "{label:>width$}");
    }
    let _ = writeln!(out);
    for (label, row) in labels.iter().zip(&metrics.confusion_matrix) {
        let _ = write!(out, "{label:>width$} ");
        for count in row {
            let _ = write!(out, "{count:>width$}");
        }
        let _ = writeln!(out);
    }
    let losses: Vec<String> = metrics
        .epoch_losses
        .iter()
        .map(|loss| format!("{loss:.4}"))
        .collect();
    let _ = writeln!(out, "loss per epoch  {}", losses.join(" "));
    out
}

/// Everything `inspect` shows: identity, spec, metrics, profile and signer.
pub fn inspect(manifest: &Manifest, signature: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model           {} version {}",
        manifest.name, manifest.version
    );
    let _ = writeln!(out, "created         {}", manifest.created_at);
    let _ = writeln!(
        out,
        "signer          {}",
        signature.map_or_else(
            || "UNSIGNED (no manifest.sig)".to_string(),
            |key_id| format!("key {key_id} (not verified here: run `verify --trust KEY.pub`)")
        )
    );
    let _ = writeln!(
        out,
        "weights         {} ({}, {} bytes, sha256 {})",
        manifest.weights.file,
        manifest.weights.format,
        manifest.weights.size,
        manifest.weights.sha256
    );
    let _ = writeln!(
        out,
        "input           {} features {:?}, {}",
        manifest.input.features.len(),
        manifest.input.shape,
        manifest.input.datatype
    );
    let _ = writeln!(out, "labels          {:?}", manifest.output.labels);
    let layers: Vec<String> = manifest.spec.layers.iter().map(describe_layer).collect();
    let _ = writeln!(out, "spec            {}", layers.join(" -> "));
    let lineage = &manifest.lineage;
    let _ = writeln!(
        out,
        "data            {} ({} rows, sha256 {})",
        lineage.dataset, lineage.rows, lineage.dataset_sha256
    );
    let hp = &lineage.hyperparameters;
    let _ = writeln!(
        out,
        "training        epochs {} batch {} lr {} seed {} patience {}",
        hp.epochs, hp.batch_size, hp.learning_rate, hp.seed, hp.patience
    );
    out.push_str(&training_report(manifest));
    let profile = &manifest.profile;
    let _ = writeln!(
        out,
        "profile         {} features, class frequencies {:?}",
        profile.features.len(),
        profile
            .class_frequencies
            .iter()
            .map(|f| format!("{f:.3}"))
            .collect::<Vec<_>>()
    );
    for feature in profile.features.iter().take(8) {
        let _ = writeln!(
            out,
            "  {:<24} {} bins, {} reference values",
            feature.name,
            feature.reference_frequencies.len(),
            feature.reference_sample.len()
        );
    }
    if profile.features.len() > 8 {
        let _ = writeln!(out, "  … {} more", profile.features.len() - 8);
    }
    let _ = writeln!(
        out,
        "self-test       {} examples, tolerance {}",
        manifest.self_test.inputs.len(),
        manifest.self_test.tolerance
    );
    out
}

fn describe_layer(layer: &LayerSpec) -> String {
    match layer {
        LayerSpec::Linear { out_features } => format!("linear({out_features})"),
        LayerSpec::Conv2d {
            out_channels,
            kernel_size,
            ..
        } => format!(
            "conv2d({out_channels}, {}x{})",
            kernel_size[0], kernel_size[1]
        ),
        LayerSpec::MaxPool2d { kernel_size, .. } => {
            format!("max_pool2d({}x{})", kernel_size[0], kernel_size[1])
        }
        LayerSpec::Reshape { shape } => format!("reshape({shape:?})"),
        LayerSpec::Dropout { prob } => format!("dropout({prob})"),
        other => other.kind().to_string(),
    }
}
