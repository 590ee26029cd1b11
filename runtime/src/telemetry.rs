//! The process-wide Prometheus recorder and the runtime's metric definitions.

use std::sync::{Mutex, OnceLock};

use edgewise_core::reported::UpdatePhase;
use edgewise_core::telemetry::TelemetryWindow;
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

/// Every update phase, for zeroing the ones the agent is not in.
const PHASES: [UpdatePhase; 5] = [
    UpdatePhase::Idle,
    UpdatePhase::Downloading,
    UpdatePhase::Verifying,
    UpdatePhase::Applied,
    UpdatePhase::Failed,
];

/// Sets `edgewise_update_phase` to 1 for `current` and 0 for the other phases.
pub fn update_phase(current: UpdatePhase) {
    metrics::describe_gauge!(
        "edgewise_update_phase",
        "1 for the agent's current update phase, 0 for the others."
    );
    for phase in PHASES {
        let name = serde_json::to_value(phase)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        metrics::gauge!("edgewise_update_phase", "phase" => name).set(if phase == current {
            1.0
        } else {
            0.0
        });
    }
}

/// Sets the per-feature drift gauges from a window just closed.
pub fn window_drift(window: &TelemetryWindow) {
    metrics::describe_gauge!(
        "edgewise_feature_drift_psi",
        "PSI of the last closed telemetry window's inputs against the reference profile."
    );
    metrics::describe_gauge!(
        "edgewise_feature_drift_ks_statistic",
        "KS statistic of the last closed window's inputs against the reference profile."
    );
    let version = window.version.to_string();
    for feature in &window.features {
        let labels = [
            ("model", window.model.clone()),
            ("version", version.clone()),
            ("feature", feature.name.clone()),
        ];
        if let Some(psi) = feature.psi {
            metrics::gauge!("edgewise_feature_drift_psi", &labels).set(psi);
        }
        if let Some(statistic) = feature.ks_statistic {
            metrics::gauge!("edgewise_feature_drift_ks_statistic", &labels).set(statistic);
        }
    }
}

/// Describes the agent's counters and starts them at zero, so that dashboards and
/// alert rules find every series from the first scrape.
pub fn register_agent_metrics() {
    metrics::describe_counter!(
        "edgewise_updates_total",
        "Model updates, by outcome (applied, failed)."
    );
    metrics::describe_counter!(
        "edgewise_update_download_bytes_total",
        metrics::Unit::Bytes,
        "Bundle bytes downloaded."
    );
    metrics::describe_counter!(
        "edgewise_assignments_refused_total",
        "Assignments refused: bad signature, another device, replayed seq or expired."
    );
    metrics::describe_counter!(
        "edgewise_telemetry_windows_total",
        "Telemetry windows handed to the broker."
    );
    metrics::describe_gauge!(
        "edgewise_telemetry_outbox_windows",
        "Telemetry windows waiting in the outbox for the broker's acknowledgement."
    );
    for outcome in ["applied", "failed"] {
        metrics::counter!("edgewise_updates_total", "outcome" => outcome).increment(0);
    }
    for name in [
        "edgewise_update_download_bytes_total",
        "edgewise_assignments_refused_total",
        "edgewise_telemetry_windows_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}
