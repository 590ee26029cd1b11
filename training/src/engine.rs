//! `edgewise-train export` and `edgewise-train bench`: a bundle's dense network as JSON
//! (weights, normalisation, labels), for rebuilding it in another runtime such as ONNX
//! Runtime, and the time Edgewise's engine takes per batch on this machine.

use std::time::{Duration, Instant};

use edgewise_core::bundle::Bundle;
use edgewise_model::dense::DenseNetwork;
use edgewise_model::{Candidate, DeviceChoice, Predictor, weights};
use serde::Serialize;
use serde_json::{Value, json};

/// Batches timed before measuring, so caches and allocators are warm.
const WARMUP: usize = 200;

/// The bundle's network as JSON: `normalization` (mean, std), `labels`, the self-test
/// vectors with their expected probabilities, and `network` (the dense steps, with
/// row-major `[inputs][outputs]` weights).
pub fn export(bundle: &[u8]) -> anyhow::Result<Value> {
    let bundle = Bundle::open(bundle)?;
    let manifest = &bundle.manifest;
    let device = Candidate::cpu().device;
    let network = weights::load(&manifest.spec, &bundle.weights, &device)?;
    let dense = DenseNetwork::from_network(&network).ok_or_else(|| {
        anyhow::anyhow!(
            "{} version {} is not a dense network (only linear layers and element-wise activations export)",
            manifest.name,
            manifest.version
        )
    })?;
    Ok(json!({
        "model": manifest.name,
        "version": manifest.version,
        "features": manifest.input.features,
        "normalization": manifest.input.normalization,
        "labels": manifest.output.labels,
        "self_test": manifest.self_test,
        "network": dense,
    }))
}

/// Which code computes the predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnginePath {
    /// What the runtime serves with: the dense fast path where it applies, else burn.
    Serving,
    /// burn's general path only.
    Burn,
}

/// Latency of one batch size.
#[derive(Debug, Serialize)]
pub struct BatchTiming {
    /// Examples per batch.
    pub batch: usize,
    /// `dense fast path` or `burn`: which code computed this batch size.
    pub path: String,
    /// Batches timed.
    pub iterations: usize,
    /// Median time per batch, microseconds.
    pub median_us: f64,
    /// 99th percentile per batch, microseconds.
    pub p99_us: f64,
    /// Examples per second at the median.
    pub examples_per_second: f64,
}

/// What `bench` measured.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    /// The device, in words.
    pub device: String,
    /// One entry per batch size.
    pub timings: Vec<BatchTiming>,
}

/// Times `predict` (normalisation, forward pass, softmax, read-back) on raw inputs
/// built from the self-test rows, `iterations` times per batch size.
pub fn bench(
    bundle: &[u8],
    choice: DeviceChoice,
    path: EnginePath,
    batches: &[usize],
    iterations: usize,
) -> anyhow::Result<EngineReport> {
    let bundle = Bundle::open(bundle)?;
    let manifest = &bundle.manifest;
    let (predictor, _) = Predictor::load(manifest, &bundle.weights, choice, 1)?;
    let predictor = match path {
        EnginePath::Serving => predictor,
        EnginePath::Burn => predictor.without_fast_path(),
    };
    let mut timings = Vec::new();
    for &batch in batches {
        let inputs: Vec<f32> = manifest
            .self_test
            .inputs
            .iter()
            .cycle()
            .take(batch)
            .flatten()
            .copied()
            .collect();
        for _ in 0..WARMUP {
            predictor.predict(&inputs, batch)?;
        }
        let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let started = Instant::now();
            let output = predictor.predict(&inputs, batch)?;
            samples.push(started.elapsed());
            std::hint::black_box(output);
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let median = at(0.5).as_secs_f64();
        timings.push(BatchTiming {
            batch,
            path: if predictor.uses_fast_path(batch) {
                "dense fast path".to_owned()
            } else {
                "burn".to_owned()
            },
            iterations,
            median_us: median * 1e6,
            p99_us: at(0.99).as_secs_f64() * 1e6,
            examples_per_second: batch as f64 / median,
        });
    }
    Ok(EngineReport {
        device: predictor.device().description.clone(),
        timings,
    })
}
