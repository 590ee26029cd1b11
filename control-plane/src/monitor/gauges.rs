//! Sets the control plane's fleet gauges from a snapshot. Gauges are set afresh on
//! every pass; series not set for a while (a version no longer served, a deleted
//! device) drop out of `/metrics` through the recorder's idle timeout.

use std::collections::BTreeMap;

use edgewise_core::reported::UpdatePhase;

use super::Snapshot;
use super::alerts::{ALERT_NAMES, AlertBook};
use crate::rollout::RolloutState;

/// Every rollout state, so that a state with no rollout reads 0.
const ROLLOUT_STATES: [RolloutState; 4] = [
    RolloutState::Running,
    RolloutState::Paused,
    RolloutState::Completed,
    RolloutState::RolledBack,
];

/// The snake_case name serde gives a unit enum variant.
fn serde_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Describes every gauge set here, once per process.
pub fn describe() {
    metrics::describe_gauge!(
        "edgewise_devices",
        "Devices by group, served model and version, and state (offline, or the update phase)."
    );
    metrics::describe_gauge!(
        "edgewise_device_online",
        "1 when the device's MQTT session is up."
    );
    metrics::describe_gauge!("edgewise_rollouts", "Rollouts by state.");
    metrics::describe_gauge!(
        "edgewise_rollout_info",
        "1 per rollout, labelled with its group, model, version and state."
    );
    metrics::describe_gauge!(
        "edgewise_rollout_stage",
        "A rollout's current stage, counted from 1."
    );
    metrics::describe_gauge!(
        "edgewise_rollout_stage_percent",
        "Share of the group a rollout's current stage reaches, in percent."
    );
    metrics::describe_gauge!(
        "edgewise_fleet_accuracy_ratio",
        "Accuracy of a model version over the labelled predictions of the last 5 minutes."
    );
    metrics::describe_gauge!(
        "edgewise_fleet_latency_p99_seconds",
        metrics::Unit::Seconds,
        "A model version's fleet p99 latency over the last 5 minutes."
    );
    metrics::describe_gauge!(
        "edgewise_fleet_feature_psi",
        "PSI of a feature's inputs of the last 5 minutes against the version's profile, per group."
    );
    metrics::describe_gauge!(
        "edgewise_fleet_feature_drifted",
        "1 when a feature is flagged as drifted in a group."
    );
    metrics::describe_gauge!(
        "edgewise_telemetry_last_received_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time of the last stored telemetry window."
    );
    metrics::describe_gauge!(
        "edgewise_alerts_firing",
        "Alerts the control plane holds firing, by name."
    );
}

/// Sets every fleet gauge from `snapshot` and the alert book.
pub fn set(snapshot: &Snapshot, book: &AlertBook) {
    set_devices(snapshot);
    set_rollouts(snapshot);
    set_health(snapshot);
    if let Some(at) = snapshot.last_received_at {
        metrics::gauge!("edgewise_telemetry_last_received_timestamp_seconds").set(at as f64);
    }
    for name in ALERT_NAMES {
        metrics::gauge!("edgewise_alerts_firing", "alertname" => name).set(book.count(name) as f64);
    }
}

fn set_devices(snapshot: &Snapshot) {
    let mut counts: BTreeMap<[String; 4], u64> = BTreeMap::new();
    for device in &snapshot.devices {
        let reported = device.reported.as_ref();
        let (model, version) = reported
            .and_then(|r| r.active.as_ref())
            .map_or(("none".to_owned(), "none".to_owned()), |active| {
                (active.model.clone(), active.version.to_string())
            });
        let state = if device.online {
            serde_name(reported.map_or(UpdatePhase::Idle, |r| r.phase))
        } else {
            "offline".to_owned()
        };
        *counts
            .entry([device.group.clone(), model, version, state])
            .or_default() += 1;
        metrics::gauge!(
            "edgewise_device_online",
            "device" => device.id.clone(),
            "group" => device.group.clone()
        )
        .set(if device.online { 1.0 } else { 0.0 });
    }
    for ([group, model, version, state], count) in counts {
        metrics::gauge!(
            "edgewise_devices",
            "group" => group,
            "model" => model,
            "version" => version,
            "state" => state
        )
        .set(count as f64);
    }
}

fn set_rollouts(snapshot: &Snapshot) {
    for state in ROLLOUT_STATES {
        let count = snapshot
            .rollouts
            .iter()
            .filter(|r| r.state == state)
            .count();
        metrics::gauge!("edgewise_rollouts", "state" => serde_name(state)).set(count as f64);
    }
    for rollout in &snapshot.rollouts {
        // Started at zero, so `increase()` in alert rules sees the first halt.
        metrics::counter!(
            "edgewise_rollouts_halted_total",
            "group" => rollout.group.clone(),
            "model" => rollout.model.clone()
        )
        .increment(0);
        metrics::gauge!(
            "edgewise_rollout_info",
            "rollout" => rollout.id.clone(),
            "group" => rollout.group.clone(),
            "model" => rollout.model.clone(),
            "version" => rollout.version.to_string(),
            "state" => serde_name(rollout.state)
        )
        .set(1.0);
        let labels = [
            ("rollout", rollout.id.clone()),
            ("group", rollout.group.clone()),
        ];
        metrics::gauge!("edgewise_rollout_stage", &labels).set((rollout.stage + 1) as f64);
        let percent = rollout.stages.get(rollout.stage).copied().unwrap_or(0);
        metrics::gauge!("edgewise_rollout_stage_percent", &labels).set(f64::from(percent));
    }
}

fn set_health(snapshot: &Snapshot) {
    for health in &snapshot.health {
        let version = health.version.to_string();
        let Some(group) = &health.group else {
            let labels = [("model", health.model.clone()), ("version", version)];
            if let Some(accuracy) = health.summary.accuracy {
                metrics::gauge!("edgewise_fleet_accuracy_ratio", &labels).set(accuracy);
            }
            if let Some(p99) = health.summary.latency_p99.filter(|p| p.is_finite()) {
                metrics::gauge!("edgewise_fleet_latency_p99_seconds", &labels).set(p99);
            }
            continue;
        };
        for feature in &health.summary.features {
            let labels = [
                ("model", health.model.clone()),
                ("version", version.clone()),
                ("group", group.clone()),
                ("feature", feature.name.clone()),
            ];
            if let Some(psi) = feature.psi {
                metrics::gauge!("edgewise_fleet_feature_psi", &labels).set(psi);
            }
            metrics::gauge!("edgewise_fleet_feature_drifted", &labels).set(if feature.drifted {
                1.0
            } else {
                0.0
            });
        }
    }
}
