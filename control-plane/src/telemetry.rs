//! The control plane's Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process and returns its handle.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| err.to_string())?;
    metrics::describe_counter!(
        "edgewise_api_requests_total",
        "REST API requests by method, route and status."
    );
    metrics::describe_histogram!(
        "edgewise_api_request_duration_seconds",
        metrics::Unit::Seconds,
        "REST API latency by method and route."
    );
    metrics::describe_counter!(
        "edgewise_artifact_bytes_served_total",
        metrics::Unit::Bytes,
        "Bundle bytes sent to nodes, by transport (quic, http)."
    );
    metrics::describe_counter!(
        "edgewise_mqtt_malformed_messages_total",
        "MQTT messages from devices dropped as malformed."
    );
    Ok(HANDLE.get_or_init(|| handle).clone())
}
