//! `edgewise status`: the whole fleet on one screen — groups and what they serve,
//! active rollouts, each served version's last five minutes, and the alerts firing.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::client::ApiClient;
use super::render::{or_dash, table};
use crate::fleet::DeviceView;
use crate::monitor::HEALTH_WINDOW_SECONDS;
use crate::monitor::alerts::Alert;
use crate::rollout::{RolloutRecord, RolloutState};
use crate::telemetry_store::TelemetrySummary;

/// One served version's recent telemetry.
#[derive(Serialize)]
struct VersionLine {
    model: String,
    version: u64,
    devices: usize,
    summary: TelemetrySummary,
}

/// Everything `edgewise status` shows.
#[derive(Serialize)]
struct Overview {
    devices: Vec<DeviceView>,
    rollouts: Vec<RolloutRecord>,
    versions: Vec<VersionLine>,
    alerts: Vec<Alert>,
}

/// Reads and prints the overview.
pub async fn show(api: &ApiClient, json: bool) -> Result<()> {
    let devices: Vec<DeviceView> = api.get("/api/v1/devices").await?;
    let rollouts: Vec<RolloutRecord> = api.get("/api/v1/rollouts").await?;
    let alerts: Vec<Alert> = api.get("/api/v1/alerts").await?;
    let mut served: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for active in devices
        .iter()
        .filter_map(|d| d.reported.as_ref()?.active.as_ref())
    {
        *served
            .entry((active.model.clone(), active.version))
            .or_default() += 1;
    }
    let mut versions = Vec::new();
    for ((model, version), count) in served {
        let summary: TelemetrySummary = api
            .get(&format!(
                "/api/v1/telemetry?model={model}&version={version}&since_seconds={HEALTH_WINDOW_SECONDS}"
            ))
            .await?;
        versions.push(VersionLine {
            model,
            version,
            devices: count,
            summary,
        });
    }
    let overview = Overview {
        devices,
        rollouts,
        versions,
        alerts,
    };
    if json {
        super::render::json(&overview);
    } else {
        print(&overview);
    }
    Ok(())
}

fn percent(value: Option<f64>) -> String {
    or_dash(value.map(|v| format!("{:.1}%", v * 100.0)))
}

fn print(overview: &Overview) {
    let online = overview.devices.iter().filter(|d| d.online).count();
    let mut groups: BTreeMap<&str, Vec<&DeviceView>> = BTreeMap::new();
    for device in &overview.devices {
        groups.entry(&device.group).or_default().push(device);
    }
    println!(
        "{} devices ({} online) in {} groups; {} alerts firing\n",
        overview.devices.len(),
        online,
        groups.len(),
        overview.alerts.len()
    );
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(group, devices)| {
            let mut serving: BTreeMap<String, usize> = BTreeMap::new();
            for device in devices {
                let label = device
                    .reported
                    .as_ref()
                    .and_then(|r| r.active.as_ref())
                    .map_or_else(
                        || "nothing".to_owned(),
                        |a| format!("{}:{}", a.model, a.version),
                    );
                *serving.entry(label).or_default() += 1;
            }
            let serving: Vec<String> = serving
                .iter()
                .map(|(label, n)| format!("{label} ×{n}"))
                .collect();
            vec![
                (*group).to_owned(),
                devices.len().to_string(),
                devices.iter().filter(|d| d.online).count().to_string(),
                serving.join(", "),
            ]
        })
        .collect();
    table(&["group", "devices", "online", "serving"], &rows);

    let active: Vec<Vec<String>> = overview
        .rollouts
        .iter()
        .filter(|r| matches!(r.state, RolloutState::Running | RolloutState::Paused))
        .map(|r| {
            let verdict = r
                .stage_results
                .iter()
                .rev()
                .find_map(|stage| stage.verdict)
                .map(|v| format!("{v:?}").to_lowercase());
            vec![
                r.id.clone(),
                format!("{}:{}", r.model, r.version),
                r.group.clone(),
                format!("{:?}", r.state).to_lowercase(),
                format!(
                    "{}/{} ({}%)",
                    r.stage + 1,
                    r.stages.len(),
                    r.stages.get(r.stage).copied().unwrap_or(0)
                ),
                or_dash(verdict),
            ]
        })
        .collect();
    println!();
    if active.is_empty() {
        println!("no rollout running");
    } else {
        table(
            &[
                "rollout",
                "version",
                "group",
                "state",
                "stage",
                "last verdict",
            ],
            &active,
        );
    }

    println!();
    let rows: Vec<Vec<String>> = overview
        .versions
        .iter()
        .map(|line| {
            let s = &line.summary;
            vec![
                format!("{}:{}", line.model, line.version),
                line.devices.to_string(),
                s.requests.to_string(),
                percent(s.error_rate),
                or_dash(s.latency_p99.map(|p| format!("{:.1}ms", p * 1000.0))),
                percent(s.accuracy),
                if s.drifted_features.is_empty() {
                    "-".to_owned()
                } else {
                    s.drifted_features.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "version",
            "devices",
            "requests (5m)",
            "errors",
            "p99",
            "accuracy",
            "drifted",
        ],
        &rows,
    );

    println!();
    if overview.alerts.is_empty() {
        println!("no alerts firing");
    } else {
        let rows: Vec<Vec<String>> = overview
            .alerts
            .iter()
            .map(|alert| {
                let label = |key: &str| alert.labels.get(key).cloned().unwrap_or_default();
                vec![
                    label("severity"),
                    label("alertname"),
                    alert.starts_at.clone(),
                    alert
                        .annotations
                        .get("summary")
                        .cloned()
                        .unwrap_or_default(),
                ]
            })
            .collect();
        table(&["severity", "alert", "since", "summary"], &rows);
    }
}
