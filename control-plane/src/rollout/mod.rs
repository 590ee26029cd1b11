//! Staged rollouts: a candidate version reaches a group in stages (e.g. 5% → 25% →
//! 100%), canary-labelled devices first. Each stage bakes, then its gates judge the
//! stage's devices against the baseline. A failed gate rolls the moved devices back to
//! the old version (or pauses, as configured); nothing else is touched. Rollouts live
//! in sled and a restarted control plane carries on where it was.

pub mod cohort;
mod driver;
pub mod gates;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use driver::run as run_driver;
use gates::{GateConfig, GateResult, Verdict};

use crate::deploy::Deployer;
use crate::error::{Error, Result};
use crate::store::Store;

/// What happens when a gate fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Send every moved device back to the old version.
    #[default]
    Rollback,
    /// Stop and wait for a person.
    Pause,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Moving through its stages.
    Running,
    /// Stopped, by a person or a failed gate; `resume` goes on.
    Paused,
    /// Every stage passed; the group runs the candidate.
    Completed,
    /// Halted and sent back to the old version.
    RolledBack,
}

/// A request to start a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The group.
    pub group: String,
    /// The model.
    pub model: String,
    /// The candidate: a version number or alias.
    pub version: String,
    /// Cumulative percentages of the group per stage, ascending, ending at 100.
    pub stages: Vec<u32>,
    /// Seconds each stage bakes before its gates are judged.
    pub bake_seconds: u64,
    /// Gate thresholds (defaults where absent).
    #[serde(default)]
    pub gates: Option<GateConfig>,
    /// What a failed gate does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Run the first stage in shadow: its devices run the candidate beside the active
    /// model on the same inputs, never serving it, and its agreement is the gate.
    #[serde(default)]
    pub shadow: bool,
}

/// A device moved to the candidate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MovedDevice {
    /// The stage it entered in.
    pub stage: usize,
    /// The seq of its candidate assignment.
    pub seq: u64,
    /// When it was assigned (seconds since the epoch).
    pub assigned_at: u64,
}

/// One stage's judgement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StageRecord {
    /// Stage index.
    pub stage: usize,
    /// Its percentage.
    pub percent: u32,
    /// Devices on the candidate in this stage (cumulative).
    pub devices: Vec<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The latest verdict (None before the bake ends).
    pub verdict: Option<Verdict>,
    /// Each gate's latest numbers and verdict.
    pub gates: Vec<GateResult>,
}

/// One line of a rollout's audit trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When (RFC 3339).
    pub at: String,
    /// What happened, e.g. `stage_started`, `gate_failed`, `rolled_back`.
    pub event: String,
    /// In words.
    pub detail: String,
}

/// A rollout as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutRecord {
    /// Rollout id.
    pub id: String,
    /// The group.
    pub group: String,
    /// The model.
    pub model: String,
    /// The candidate version.
    pub version: u64,
    /// The version the group ran before.
    pub baseline_version: u64,
    /// Cumulative stage percentages.
    pub stages: Vec<u32>,
    /// Bake time per stage, seconds.
    pub bake_seconds: u64,
    /// Gate thresholds.
    pub gates: GateConfig,
    /// What a failed gate does.
    pub on_failure: OnFailure,
    /// Whether the first stage runs in shadow.
    #[serde(default)]
    pub shadow: bool,
    /// Where it is.
    pub state: RolloutState,
    /// The current stage index.
    pub stage: usize,
    /// When the current stage started (seconds since the epoch).
    pub stage_started_at: u64,
    /// When every device of the current stage had applied or failed; the bake runs from here.
    #[serde(default)]
    pub settled_at: Option<u64>,
    /// When the rollout started (seconds since the epoch).
    pub started_at: u64,
    /// Devices moved to the candidate.
    pub moved: BTreeMap<String, MovedDevice>,
    /// Each stage's judgement.
    pub stage_results: Vec<StageRecord>,
    /// Every transition.
    pub audit: Vec<AuditEntry>,
    /// Why it paused or rolled back.
    pub reason: Option<String>,
}

impl RolloutRecord {
    /// Appends to the audit trail.
    fn record(&mut self, event: &str, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(rollout = %self.id, event, %detail, "rollout");
        self.audit.push(AuditEntry {
            at: now_rfc3339(),
            event: event.to_owned(),
            detail,
        });
    }
}

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn is_active(rollout: &RolloutRecord) -> bool {
    matches!(rollout.state, RolloutState::Running | RolloutState::Paused)
}

/// Refuses (409) when a rollout of `model` to `group` is under way.
pub fn refuse_if_rolling(store: &Store, group: &str, model: &str) -> Result<()> {
    let rollouts = store.table::<RolloutRecord>("rollouts")?;
    if let Some(active) = rollouts
        .all()?
        .into_iter()
        .find(|r| r.group == group && r.model == model && is_active(r))
    {
        return Err(Error::Conflict(format!(
            "rollout {} of {model} to group {group} is {}; abort or finish it first",
            active.id,
            if active.state == RolloutState::Running {
                "running"
            } else {
                "paused"
            }
        )));
    }
    Ok(())
}

/// Starts, steers and reports rollouts.
#[derive(Clone)]
pub struct Rollouts {
    deployer: Deployer,
}

impl Rollouts {
    /// Rollouts issuing assignments through `deployer`.
    pub fn new(deployer: Deployer) -> Self {
        Rollouts { deployer }
    }

    fn table(&self) -> Result<crate::store::Table<RolloutRecord>> {
        Ok(self.deployer.store().table("rollouts")?)
    }

    /// Starts a rollout.
    pub fn start(&self, request: &NewRollout) -> Result<RolloutRecord> {
        let stages = &request.stages;
        if stages.is_empty()
            || stages.windows(2).any(|w| w[0] >= w[1])
            || stages.last() != Some(&100)
            || stages[0] == 0
        {
            return Err(Error::Invalid(format!(
                "field `stages` must be ascending percentages ending at 100, e.g. [5, 25, 100]; got {stages:?}"
            )));
        }
        let candidate = self
            .deployer
            .registry()
            .resolve(&request.model, &request.version)?;
        self.deployer.registry().check_signer(&candidate)?;
        let store = self.deployer.store();
        let _guard = store.lock();
        refuse_if_rolling(store, &request.group, &request.model)?;
        let target = store.groups.get(&request.group)?.filter(|t| t.model == request.model).ok_or_else(|| {
            Error::Invalid(format!(
                "group {:?} runs no version of {} yet, so there is no baseline; deploy one first with `edgewise deploy`",
                request.group, request.model
            ))
        })?;
        if target.version == candidate.version {
            return Err(Error::Conflict(format!(
                "group {} already runs {} version {}",
                request.group, request.model, candidate.version
            )));
        }
        let id = format!("ro-{}", store.next_id()? + 1);
        let now = now_seconds();
        let mut rollout = RolloutRecord {
            id: id.clone(),
            group: request.group.clone(),
            model: request.model.clone(),
            version: candidate.version,
            baseline_version: target.version,
            stages: stages.clone(),
            bake_seconds: request.bake_seconds,
            gates: request.gates.clone().unwrap_or_default(),
            on_failure: request.on_failure,
            shadow: request.shadow,
            state: RolloutState::Running,
            stage: 0,
            stage_started_at: now,
            settled_at: None,
            started_at: now,
            moved: BTreeMap::new(),
            stage_results: Vec::new(),
            audit: Vec::new(),
            reason: None,
        };
        rollout.record(
            "started",
            format!(
                "{} {} → {} on group {}, stages {:?}, bake {}s",
                rollout.model,
                rollout.baseline_version,
                rollout.version,
                rollout.group,
                rollout.stages,
                rollout.bake_seconds
            ),
        );
        self.table()?.put(&id, &rollout)?;
        store.flush()?;
        Ok(rollout)
    }

    /// Every rollout, newest first.
    pub fn list(&self) -> Result<Vec<RolloutRecord>> {
        let mut rollouts = self.table()?.all()?;
        rollouts.sort_by_key(|r| {
            std::cmp::Reverse(r.id.trim_start_matches("ro-").parse::<u64>().unwrap_or(0))
        });
        Ok(rollouts)
    }

    /// One rollout.
    pub fn get(&self, id: &str) -> Result<RolloutRecord> {
        self.table()?
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no rollout {id:?}")))
    }

    /// Applies an operator's command: `pause`, `resume`, `promote` or `abort`.
    pub async fn command(&self, id: &str, command: &str) -> Result<RolloutRecord> {
        let moved_back = {
            let store = self.deployer.store();
            let _guard = store.lock();
            let mut rollout = self.get(id)?;
            let mut moved_back = Vec::new();
            match (command, rollout.state) {
                ("pause", RolloutState::Running) => {
                    rollout.state = RolloutState::Paused;
                    rollout.reason = Some("paused by an operator".into());
                    rollout.record("paused", "by an operator");
                }
                ("resume", RolloutState::Paused) => {
                    rollout.state = RolloutState::Running;
                    rollout.reason = None;
                    rollout.stage_started_at = now_seconds();
                    rollout.settled_at = None;
                    rollout.record(
                        "resumed",
                        format!("stage {} bakes again", rollout.stage + 1),
                    );
                }
                ("promote", RolloutState::Running | RolloutState::Paused) => {
                    rollout.state = RolloutState::Running;
                    rollout.record(
                        "promoted",
                        format!(
                            "stage {} passed by an operator, gates skipped",
                            rollout.stage + 1
                        ),
                    );
                    moved_back = driver::advance(&self.deployer, &mut rollout)?;
                }
                ("abort", RolloutState::Running | RolloutState::Paused) => {
                    moved_back =
                        driver::roll_back(&self.deployer, &mut rollout, "aborted by an operator")?;
                }
                (command @ ("pause" | "resume" | "promote" | "abort"), state) => {
                    return Err(Error::Conflict(format!(
                        "cannot {command} rollout {id}: it is {state:?}"
                    )));
                }
                (other, _) => {
                    return Err(Error::Invalid(format!(
                        "unknown command {other:?}; expected pause, resume, promote or abort"
                    )));
                }
            }
            self.table()?.put(id, &rollout)?;
            store.flush()?;
            moved_back
        };
        self.deployer.publish(&moved_back).await;
        self.get(id)
    }
}
