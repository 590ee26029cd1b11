//! The process-wide Prometheus recorder and the runtime's metric definitions.

use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from 50 µs to 2.5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];
/// Batch-size buckets in examples.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The labels of the model-info series set last, so a swap can zero it.
static DESCRIBED: Mutex<Option<[String; 4]>> = Mutex::new(None);

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("edgewise_inference_request_duration_seconds".to_string()),
            &LATENCY_BUCKETS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full("edgewise_inference_batch_size".to_string()),
                &BATCH_BUCKETS,
            )
        })
        .map_err(|err| err.to_string())?
        .install_recorder()
        .map_err(|err| err.to_string())?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Describes the metrics and sets the model-info gauge for the served model (zeroing
/// the one it replaces).
pub fn describe_model(name: &str, version: &str, device: &str, signer: &str) {
    metrics::describe_counter!(
        "edgewise_inference_requests_total",
        "Infer requests by model, version and outcome (success, client_error, server_error, overloaded)."
    );
    metrics::describe_histogram!(
        "edgewise_inference_request_duration_seconds",
        metrics::Unit::Seconds,
        "Infer request latency, from body received to answer ready."
    );
    metrics::describe_histogram!(
        "edgewise_inference_batch_size",
        "Examples per batch run by the dynamic batcher."
    );
    metrics::describe_gauge!(
        "edgewise_model_info",
        "The served model: 1, labelled with its name, version, device and signer."
    );
    let labels = [name, version, device, signer].map(str::to_string);
    let mut described = DESCRIBED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(old) = described.replace(labels.clone()) {
        model_info(&old).set(0.0);
    }
    model_info(&labels).set(1.0);
}

/// The `edgewise_model_info` series with these labels.
fn model_info([name, version, device, signer]: &[String; 4]) -> metrics::Gauge {
    metrics::gauge!(
        "edgewise_model_info",
        "model" => name.clone(),
        "version" => version.clone(),
        "device" => device.clone(),
        "signer" => signer.clone()
    )
}
