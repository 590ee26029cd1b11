//! The control plane's Prometheus recorder.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How long a gauge may go unset before its series is dropped.
const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// API latency buckets in seconds, from 1 ms to 10 s.
const API_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Telemetry ingest lag buckets in seconds, from 10 ms to 1 h (windows sit in outboxes
/// while nodes are offline).
const LAG_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3_600.0,
];

/// Installs the recorder once per process and returns its handle.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        // The fleet gauges are set on every monitor pass; a series not set for a
        // minute (a version no longer served, a deleted device) is dropped.
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
        .set_buckets_for_metric(
            Matcher::Full("edgewise_api_request_duration_seconds".to_owned()),
            &API_BUCKETS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full("edgewise_telemetry_ingest_lag_seconds".to_owned()),
                &LAG_BUCKETS,
            )
        })
        .map_err(|err| err.to_string())?
        .install_recorder()
        .map_err(|err| err.to_string())?;
    metrics::describe_histogram!(
        "edgewise_telemetry_ingest_lag_seconds",
        metrics::Unit::Seconds,
        "Time from a telemetry window's end on the device to its storage."
    );
    metrics::describe_counter!(
        "edgewise_rollout_gate_verdicts_total",
        "Rollout gate judgements by group, gate and verdict (pass, fail)."
    );
    metrics::describe_counter!(
        "edgewise_rollouts_halted_total",
        "Rollouts halted by a failed gate (rolled back or paused), by group and model."
    );
    metrics::describe_counter!(
        "edgewise_alert_notifications_total",
        "Alert notifications sent to webhooks, by alert, status and outcome."
    );
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
        "edgewise_artifact_redirects_total",
        "Bundle downloads redirected to presigned S3 URLs."
    );
    metrics::describe_counter!(
        "edgewise_mqtt_malformed_messages_total",
        "MQTT messages from devices dropped as malformed."
    );
    metrics::describe_counter!(
        "edgewise_mqtt_messages_received_total",
        "Messages published to the embedded broker, by topic (desired, reported, telemetry, status, other)."
    );
    metrics::describe_gauge!(
        "edgewise_mqtt_clients_connected",
        "Clients connected to the embedded broker."
    );
    metrics::describe_counter!(
        "edgewise_telemetry_windows_ingested_total",
        "Telemetry windows stored."
    );
    metrics::describe_counter!(
        "edgewise_telemetry_windows_duplicate_total",
        "Re-sent telemetry windows dropped as duplicates."
    );
    for name in [
        "edgewise_mqtt_malformed_messages_total",
        "edgewise_telemetry_windows_ingested_total",
        "edgewise_telemetry_windows_duplicate_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    Ok(HANDLE.get_or_init(|| handle).clone())
}
