//! The control plane's own alerts, kept apart from IO: [`conditions`] reads a fleet
//! snapshot and says what is wrong now; [`AlertBook`] remembers what is firing and
//! turns each change into a notification, firing or resolved, in the shape
//! Alertmanager gives its webhook receivers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::Snapshot;
use crate::rollout::RolloutState;
use crate::telemetry_store::{DRIFT_KS_WINDOW_SHARE, DRIFT_PSI_THRESHOLD, FeatureDrift};

/// `endsAt` of an alert still firing, as Alertmanager writes it.
const OPEN_END: &str = "0001-01-01T00:00:00Z";

/// The alert names the control plane raises.
pub const ALERT_NAMES: [&str; 3] = [NODE_OFFLINE, FEATURE_DRIFT, ROLLOUT_HALTED];
const NODE_OFFLINE: &str = "EdgewiseNodeOffline";
const FEATURE_DRIFT: &str = "EdgewiseFeatureDrift";
const ROLLOUT_HALTED: &str = "EdgewiseRolloutHalted";

/// When the alerts fire.
#[derive(Debug, Clone, Copy)]
pub struct AlertSettings {
    /// How long a device that was once seen must be offline.
    pub offline_after: Duration,
    /// How long a halted rollout stays an alert.
    pub halted_for: Duration,
    /// Fewest predicted examples behind a drift alert.
    pub min_drift_examples: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            offline_after: Duration::from_secs(120),
            halted_for: Duration::from_secs(3_600),
            min_drift_examples: 500,
        }
    }
}

/// Something wrong now: what identifies it and what to tell a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Identity: `alertname`, `severity` and what it is about.
    pub labels: BTreeMap<String, String>,
    /// `summary` and `description`.
    pub annotations: BTreeMap<String, String>,
}

/// One alert in the Alertmanager webhook shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Identity labels.
    pub labels: BTreeMap<String, String>,
    /// Text for people.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (RFC 3339).
    pub starts_at: String,
    /// When it resolved, or `0001-01-01T00:00:00Z` while firing.
    pub ends_at: String,
    /// Where to look: the control plane's dashboard.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// A stable hash of the labels.
    pub fingerprint: String,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn annotations(summary: String, description: String) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("summary".to_owned(), summary),
        ("description".to_owned(), description),
    ])
}

fn seconds_since(at: &str, now: SystemTime) -> Option<Duration> {
    let then = humantime::parse_rfc3339_weak(at).ok()?;
    Some(now.duration_since(then).unwrap_or(Duration::ZERO))
}

/// What is wrong in `snapshot` now.
pub fn conditions(snapshot: &Snapshot, settings: &AlertSettings) -> Vec<Condition> {
    let mut found = Vec::new();
    for device in &snapshot.devices {
        let offline_for = device
            .last_seen
            .as_deref()
            .and_then(|seen| seconds_since(seen, snapshot.now));
        if let (false, Some(offline_for)) = (device.online, offline_for)
            && offline_for >= settings.offline_after
        {
            found.push(Condition {
                labels: labels(&[
                    ("alertname", NODE_OFFLINE),
                    ("severity", "warning"),
                    ("device", &device.id),
                    ("group", &device.group),
                ]),
                annotations: annotations(
                    format!("Device {} is offline", device.id),
                    format!(
                        "Device {} of group {} has not been connected for {}s.",
                        device.id,
                        device.group,
                        offline_for.as_secs()
                    ),
                ),
            });
        }
    }
    for health in &snapshot.health {
        let Some(group) = &health.group else { continue };
        if health.summary.examples < settings.min_drift_examples {
            continue;
        }
        let version = health.version.to_string();
        // A page needs both tests to agree: PSI alone runs high on sparse bins over
        // small samples, and KS alone is blind to shifts within a bin.
        let confirmed = |f: &&FeatureDrift| {
            f.psi.is_some_and(|psi| psi > DRIFT_PSI_THRESHOLD)
                && f.ks_drifted_share
                    .is_some_and(|share| share >= DRIFT_KS_WINDOW_SHARE)
        };
        for feature in health.summary.features.iter().filter(confirmed) {
            let psi = feature
                .psi
                .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.3}"));
            found.push(Condition {
                labels: labels(&[
                    ("alertname", FEATURE_DRIFT),
                    ("severity", "warning"),
                    ("model", &health.model),
                    ("version", &version),
                    ("group", group),
                    ("feature", &feature.name),
                ]),
                annotations: annotations(
                    format!(
                        "Input drift on {} for {} v{} in group {group}",
                        feature.name, health.model, version
                    ),
                    format!(
                        "Feature {} drifted from the training profile over {} windows: PSI {psi}, \
                         KS drifted in {:.0}% of windows.",
                        feature.name,
                        health.summary.windows,
                        feature.ks_drifted_share.unwrap_or(0.0) * 100.0
                    ),
                ),
            });
        }
    }
    for rollout in &snapshot.rollouts {
        if !matches!(
            rollout.state,
            RolloutState::Paused | RolloutState::RolledBack
        ) {
            continue;
        }
        let Some(failed) = rollout
            .audit
            .iter()
            .rev()
            .find(|e| e.event == "gate_failed")
        else {
            continue;
        };
        if seconds_since(&failed.at, snapshot.now).is_none_or(|age| age >= settings.halted_for) {
            continue;
        }
        let version = rollout.version.to_string();
        let state = if rollout.state == RolloutState::Paused {
            "paused"
        } else {
            "rolled back"
        };
        found.push(Condition {
            labels: labels(&[
                ("alertname", ROLLOUT_HALTED),
                ("severity", "critical"),
                ("rollout", &rollout.id),
                ("group", &rollout.group),
                ("model", &rollout.model),
                ("version", &version),
            ]),
            annotations: annotations(
                format!(
                    "Rollout {} of {} v{} to {} halted",
                    rollout.id, rollout.model, version, rollout.group
                ),
                format!("The rollout was {state}: {}", failed.detail),
            ),
        });
    }
    found
}

/// A stable identity for a label set (as Alertmanager's fingerprint, hex).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in labels {
        hasher.update(key.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
        hasher.update([0xff]);
    }
    hex::encode(&hasher.finalize()[..8])
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The alerts firing now, keyed by fingerprint.
#[derive(Debug, Default)]
pub struct AlertBook {
    firing: BTreeMap<String, Alert>,
}

impl AlertBook {
    /// Takes the conditions found at `now`; returns the notifications to send: alerts
    /// that started firing, and alerts whose condition went away (resolved).
    pub fn update(
        &mut self,
        conditions: Vec<Condition>,
        now: SystemTime,
        generator_url: &str,
    ) -> Vec<Alert> {
        let mut changes = Vec::new();
        let mut seen = BTreeMap::new();
        for condition in conditions {
            let fingerprint = fingerprint(&condition.labels);
            if let Some(alert) = self.firing.get_mut(&fingerprint) {
                alert.annotations = condition.annotations;
            } else {
                let alert = Alert {
                    status: "firing".to_owned(),
                    labels: condition.labels,
                    annotations: condition.annotations,
                    starts_at: rfc3339(now),
                    ends_at: OPEN_END.to_owned(),
                    generator_url: generator_url.to_owned(),
                    fingerprint: fingerprint.clone(),
                };
                changes.push(alert.clone());
                self.firing.insert(fingerprint.clone(), alert);
            }
            seen.insert(fingerprint, ());
        }
        let gone: Vec<String> = self
            .firing
            .keys()
            .filter(|fingerprint| !seen.contains_key(*fingerprint))
            .cloned()
            .collect();
        for fingerprint in gone {
            if let Some(mut alert) = self.firing.remove(&fingerprint) {
                alert.status = "resolved".to_owned();
                alert.ends_at = rfc3339(now);
                changes.push(alert);
            }
        }
        changes
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing.values().cloned().collect()
    }

    /// How many alerts of `name` are firing.
    pub fn count(&self, name: &str) -> usize {
        self.firing
            .values()
            .filter(|alert| alert.labels.get("alertname").map(String::as_str) == Some(name))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(device: &str) -> Condition {
        Condition {
            labels: labels(&[("alertname", NODE_OFFLINE), ("device", device)]),
            annotations: annotations("s".into(), "d".into()),
        }
    }

    #[test]
    fn an_alert_fires_once_and_resolves_when_its_condition_goes() {
        let mut book = AlertBook::default();
        let now = SystemTime::now();
        let first = book.update(vec![condition("a")], now, "http://cp/");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].status, "firing");
        assert_eq!(first[0].ends_at, OPEN_END);
        assert!(
            book.update(vec![condition("a")], now, "http://cp/")
                .is_empty()
        );
        assert_eq!(book.count(NODE_OFFLINE), 1);
        let resolved = book.update(vec![condition("b")], now, "http://cp/");
        let statuses: Vec<(&str, &str)> = resolved
            .iter()
            .map(|a| (a.labels["device"].as_str(), a.status.as_str()))
            .collect();
        assert_eq!(statuses, vec![("b", "firing"), ("a", "resolved")]);
        assert_ne!(resolved[1].ends_at, OPEN_END);
    }

    #[test]
    fn fingerprints_depend_on_every_label() {
        assert_eq!(
            fingerprint(&condition("a").labels),
            fingerprint(&condition("a").labels)
        );
        assert_ne!(
            fingerprint(&condition("a").labels),
            fingerprint(&condition("b").labels)
        );
    }
}
