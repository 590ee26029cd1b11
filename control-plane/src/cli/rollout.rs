//! `edgewise rollout start|status|list|pause|resume|promote|abort`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;

use super::client::ApiClient;
use super::render::{self, or_dash, table};
use crate::rollout::gates::GateConfig;
use crate::rollout::{OnFailure, RolloutRecord, RolloutState};

/// Rollout commands.
#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Start a staged rollout of a version to a group.
    Start {
        /// The group.
        #[arg(long)]
        group: String,
        /// The model.
        #[arg(long)]
        model: String,
        /// The candidate: version number or alias.
        #[arg(long)]
        version: String,
        /// Cumulative percentages per stage, e.g. 5,25,100.
        #[arg(long, value_delimiter = ',', default_value = "5,25,100")]
        stages: Vec<u32>,
        /// How long each stage bakes before its gates are judged.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        bake: Duration,
        /// A JSON file of gate thresholds (any subset of the defaults).
        #[arg(long)]
        gates: Option<PathBuf>,
        /// What a failed gate does.
        #[arg(long, value_enum, default_value = "rollback")]
        on_failure: FailureChoice,
        /// Run the first stage in shadow: the candidate runs beside the active model
        /// and its agreement is judged, without serving its answers.
        #[arg(long)]
        shadow: bool,
        /// Wait until the rollout completes or halts.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show a rollout: stages, gate numbers and verdicts, audit trail.
    Status {
        /// Rollout id (the latest by default).
        id: Option<String>,
    },
    /// List rollouts.
    List,
    /// Pause a running rollout.
    Pause {
        /// Rollout id.
        id: String,
    },
    /// Resume a paused rollout (the stage bakes again).
    Resume {
        /// Rollout id.
        id: String,
    },
    /// Pass the current stage now, skipping its gates.
    Promote {
        /// Rollout id.
        id: String,
    },
    /// Stop and send every moved device back to the old version.
    Abort {
        /// Rollout id.
        id: String,
    },
}

/// `--on-failure` values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FailureChoice {
    /// Roll the moved devices back.
    Rollback,
    /// Pause for an operator.
    Pause,
}

/// Runs a rollout command.
pub async fn run(api: &ApiClient, json: bool, command: RolloutCommand) -> Result<()> {
    match command {
        RolloutCommand::Start {
            group,
            model,
            version,
            stages,
            bake,
            gates,
            on_failure,
            shadow,
            wait,
            timeout,
        } => {
            let gates: Option<GateConfig> = match gates {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Some(
                        serde_json::from_str(&text)
                            .with_context(|| format!("{} is not a gates file", path.display()))?,
                    )
                }
                None => None,
            };
            let on_failure = match on_failure {
                FailureChoice::Rollback => OnFailure::Rollback,
                FailureChoice::Pause => OnFailure::Pause,
            };
            let body = json!({
                "group": group, "model": model, "version": version, "stages": stages,
                "bake_seconds": bake.as_secs(), "gates": gates, "on_failure": on_failure, "shadow": shadow,
            });
            let mut rollout: RolloutRecord = api
                .send_json(Method::POST, "/api/v1/rollouts", &body)
                .await?;
            if wait {
                eprintln!(
                    "rollout {} started: {} version {} to group {}",
                    rollout.id, rollout.model, rollout.version, rollout.group
                );
                rollout = wait_for(api, json, &rollout.id, timeout).await?;
            }
            print(json, &rollout);
            match rollout.state {
                RolloutState::RolledBack => bail!(
                    "rollout {} was rolled back: {}",
                    rollout.id,
                    rollout.reason.unwrap_or_default()
                ),
                RolloutState::Paused if wait => bail!(
                    "rollout {} is paused at stage {}: {} (resume, promote or abort it)",
                    rollout.id,
                    rollout.stage + 1,
                    rollout.reason.unwrap_or_default()
                ),
                _ => {}
            }
        }
        RolloutCommand::Status { id } => {
            let id = match id {
                Some(id) => id,
                None => api.newest_id("/api/v1/rollouts", "rollouts").await?,
            };
            let rollout: RolloutRecord = api.get(&format!("/api/v1/rollouts/{id}")).await?;
            print(json, &rollout);
        }
        RolloutCommand::List => {
            let all: Vec<RolloutRecord> = api.get("/api/v1/rollouts").await?;
            if json {
                render::json(&all);
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            r.group.clone(),
                            format!("{} {}→{}", r.model, r.baseline_version, r.version),
                            state_name(r.state),
                            format!(
                                "{}/{} ({}%)",
                                r.stage + 1,
                                r.stages.len(),
                                r.stages[r.stage]
                            ),
                            r.moved.len().to_string(),
                            or_dash(r.reason.as_ref()),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "rollout", "group", "model", "state", "stage", "moved", "reason",
                    ],
                    &rows,
                );
            }
        }
        RolloutCommand::Pause { id } => steer(api, json, &id, "pause").await?,
        RolloutCommand::Resume { id } => steer(api, json, &id, "resume").await?,
        RolloutCommand::Promote { id } => steer(api, json, &id, "promote").await?,
        RolloutCommand::Abort { id } => steer(api, json, &id, "abort").await?,
    }
    Ok(())
}

async fn steer(api: &ApiClient, json: bool, id: &str, verb: &str) -> Result<()> {
    let rollout: RolloutRecord = api
        .send_json(
            Method::POST,
            &format!("/api/v1/rollouts/{id}/{verb}"),
            &json!({}),
        )
        .await?;
    print(json, &rollout);
    Ok(())
}

fn state_name(state: RolloutState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Prints a rollout: header, each stage's gates, and the audit trail.
fn print(json: bool, rollout: &RolloutRecord) {
    if json {
        render::json(rollout);
        return;
    }
    println!(
        "rollout {}: {} {} → {} on group {} — {} (stage {} of {}: {}%)",
        rollout.id,
        rollout.model,
        rollout.baseline_version,
        rollout.version,
        rollout.group,
        state_name(rollout.state),
        rollout.stage + 1,
        rollout.stages.len(),
        rollout.stages[rollout.stage]
    );
    if let Some(reason) = &rollout.reason {
        println!("reason: {reason}");
    }
    for stage in &rollout.stage_results {
        let verdict = stage
            .verdict
            .map_or("baking".to_owned(), |v| format!("{v:?}").to_lowercase());
        println!(
            "\nstage {} ({}%, {} devices): {verdict}",
            stage.stage + 1,
            stage.percent,
            stage.devices.len()
        );
        let rows: Vec<Vec<String>> = stage
            .gates
            .iter()
            .map(|g| {
                vec![
                    g.name.clone(),
                    format!("{:?}", g.verdict).to_lowercase(),
                    g.detail.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            table(&["gate", "verdict", "numbers"], &rows);
        }
    }
    println!("\naudit trail:");
    for entry in rollout
        .audit
        .iter()
        .filter(|e| e.event != "device_assigned")
    {
        println!("  {}  {:<14} {}", entry.at, entry.event, entry.detail);
    }
}

/// Polls until the rollout completes or halts, with a progress bar over the stages on a
/// terminal and a line per change elsewhere (CI logs); on timeout, prints where it is.
async fn wait_for(
    api: &ApiClient,
    json: bool,
    id: &str,
    timeout: Duration,
) -> Result<RolloutRecord> {
    let started = Instant::now();
    let mut rollout: RolloutRecord = api.get(&format!("/api/v1/rollouts/{id}")).await?;
    let bar = ProgressBar::new(rollout.stages.len() as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] stage {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let on_terminal = std::io::stderr().is_terminal();
    let mut last_logged = None;
    loop {
        let stage = rollout.stage as u64 + u64::from(rollout.state == RolloutState::Completed);
        bar.set_message(format!("rollout {id}: {}", state_name(rollout.state)));
        bar.set_position(stage);
        if !on_terminal && last_logged != Some((stage, rollout.state)) {
            eprintln!(
                "rollout {id}: {} at stage {stage}/{} ({}s)",
                state_name(rollout.state),
                rollout.stages.len(),
                started.elapsed().as_secs()
            );
            last_logged = Some((stage, rollout.state));
        }
        if !matches!(rollout.state, RolloutState::Running) {
            bar.finish_and_clear();
            return Ok(rollout);
        }
        if started.elapsed() > timeout {
            bar.abandon();
            print(json, &rollout);
            bail!(
                "rollout {id} did not finish within {}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        rollout = api.get(&format!("/api/v1/rollouts/{id}")).await?;
    }
}
