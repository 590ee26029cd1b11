//! Retraining policies: the closed loop. A policy watches one model; when the fleet
//! monitor reports confirmed input drift (or accuracy below a threshold where labels
//! arrive) in its groups, it trains on the captured, labelled examples of those groups
//! (plus optional reference data), keeps the newest captures aside to compare the
//! candidate with the serving version, registers the candidate only if it wins by a
//! margin, and starts a canary rollout — at once, or after an approval.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::jobs::Jobs;
use crate::jobs::dataset::{CapturedData, DatasetChoice};
use crate::jobs::record::{
    EvaluationPlan, ExecutorKind, HyperParameters, NewTrainingJob, TrainingJob,
};
use crate::monitor::Snapshot;
use crate::monitor::alerts::Alert;
use crate::rollout::gates::GateConfig;
use crate::rollout::{NewRollout, OnFailure, Rollouts};
use crate::store::Table;

/// The origin recorded on jobs a policy submits.
pub const POLICY_ORIGIN: &str = "retraining-policy";

/// How a retrained version is rolled out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRollout {
    /// Wait for `POST /api/v1/training-jobs/{id}/approve` before rolling out.
    #[serde(default)]
    pub approval: bool,
    /// Cumulative stage percentages.
    #[serde(default = "default_stages")]
    pub stages: Vec<u32>,
    /// Seconds each stage bakes.
    #[serde(default = "default_bake")]
    pub bake_seconds: u64,
    /// What a failed gate does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Gate thresholds (defaults where absent). A model retrained on drifted inputs
    /// is expected to answer differently: loosen `max_js_distance` and let the
    /// accuracy gate judge.
    #[serde(default)]
    pub gates: Option<GateConfig>,
}

fn default_stages() -> Vec<u32> {
    vec![10, 50, 100]
}

fn default_bake() -> u64 {
    300
}

impl Default for PolicyRollout {
    fn default() -> Self {
        PolicyRollout {
            approval: false,
            stages: default_stages(),
            bake_seconds: default_bake(),
            on_failure: OnFailure::Rollback,
            gates: None,
        }
    }
}

/// A model's retraining policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrainingPolicy {
    /// Retrain when the monitor confirms input drift.
    #[serde(default = "yes")]
    pub on_drift: bool,
    /// Retrain when a group's accuracy (over the last 5 minutes' labels) falls below this.
    pub accuracy_below: Option<f64>,
    /// Only these groups (all groups when empty).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Fewest labelled captures to train on.
    #[serde(default = "default_min_labelled")]
    pub min_labelled: usize,
    /// Only captures this recent, in seconds (all when absent).
    pub capture_window_seconds: Option<u64>,
    /// An uploaded dataset trained on beside the captures.
    pub reference_dataset: Option<String>,
    /// The reference dataset's label column (default: its last column).
    pub reference_label: Option<String>,
    /// Share of the newest captures held out for the comparison.
    #[serde(default = "default_holdout")]
    pub holdout_fraction: f64,
    /// How much higher the candidate's held-out accuracy must be.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Training settings.
    #[serde(default)]
    pub hyperparameters: HyperParameters,
    /// Where the job runs.
    #[serde(default)]
    pub executor: ExecutorKind,
    /// Seconds between two retrainings.
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
    /// How the result is rolled out.
    #[serde(default)]
    pub rollout: PolicyRollout,
}

fn yes() -> bool {
    true
}
fn default_min_labelled() -> usize {
    500
}
fn default_holdout() -> f64 {
    0.2
}
fn default_margin() -> f64 {
    0.02
}
fn default_cooldown() -> u64 {
    3_600
}

/// A policy with what it did last.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRecord {
    /// The model.
    pub model: String,
    /// The policy.
    pub policy: RetrainingPolicy,
    /// When it last started a job (Unix seconds).
    pub last_triggered_at: Option<u64>,
    /// The last job it started.
    pub last_job: Option<String>,
    /// Why it last triggered, or what it waits for.
    pub last_reason: Option<String>,
}

/// What set a policy off.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The groups where it happened.
    pub groups: BTreeSet<String>,
    /// In words.
    pub reason: String,
}

/// Whether `policy` of `model` triggers on the monitor's findings (pure).
pub fn trigger(
    model: &str,
    policy: &RetrainingPolicy,
    alerts: &[Alert],
    snapshot: &Snapshot,
) -> Option<Trigger> {
    let watched =
        |group: &str| policy.groups.is_empty() || policy.groups.iter().any(|g| g == group);
    let mut groups = BTreeSet::new();
    let mut reasons = Vec::new();
    if policy.on_drift {
        for alert in alerts {
            let label = |key: &str| {
                alert
                    .labels
                    .get(key)
                    .map(String::as_str)
                    .unwrap_or_default()
            };
            if label("alertname") == "EdgewiseFeatureDrift"
                && label("model") == model
                && watched(label("group"))
            {
                groups.insert(label("group").to_owned());
                reasons.push(format!(
                    "drift on {} in {}",
                    label("feature"),
                    label("group")
                ));
            }
        }
    }
    if let Some(threshold) = policy.accuracy_below {
        for health in &snapshot.health {
            let (Some(group), Some(accuracy)) = (&health.group, health.summary.accuracy) else {
                continue;
            };
            if health.model == model
                && watched(group)
                && health.summary.labelled >= 50
                && accuracy < threshold
            {
                groups.insert(group.clone());
                reasons.push(format!("accuracy {accuracy:.3} < {threshold} in {group}"));
            }
        }
    }
    (!groups.is_empty()).then(|| Trigger {
        groups,
        reason: reasons.join("; "),
    })
}

/// The version most devices of `groups` serve.
fn serving_version(snapshot: &Snapshot, model: &str, groups: &BTreeSet<String>) -> Option<u64> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for device in snapshot
        .devices
        .iter()
        .filter(|d| groups.contains(&d.group))
    {
        if let Some(active) = device.reported.as_ref().and_then(|r| r.active.as_ref())
            && active.model == model
        {
            *counts.entry(active.version).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(version, _)| version)
}

/// Retraining policies and their effects.
#[derive(Clone)]
pub struct Retraining {
    policies: Table<PolicyRecord>,
    jobs: Jobs,
    rollouts: Rollouts,
}

impl Retraining {
    /// The policies in the store; hooks itself to finished jobs.
    pub fn new(store: &crate::store::Store, jobs: Jobs, rollouts: Rollouts) -> Result<Self> {
        let retraining = Retraining {
            policies: store.table("retraining_policies")?,
            jobs: jobs.clone(),
            rollouts,
        };
        let hooked = retraining.clone();
        jobs.on_finished(Box::new(move |job| hooked.job_finished(job)));
        Ok(retraining)
    }

    /// Sets `model`'s policy.
    pub fn set(&self, model: &str, policy: RetrainingPolicy) -> Result<PolicyRecord> {
        crate::registry::check_name("model name", model)?;
        if !(0.05..=0.5).contains(&policy.holdout_fraction) {
            return Err(Error::Invalid(format!(
                "field `holdout_fraction`: expected 0.05 to 0.5, got {}",
                policy.holdout_fraction
            )));
        }
        if policy.min_labelled < 20 {
            return Err(Error::Invalid(format!(
                "field `min_labelled`: expected at least 20, got {}",
                policy.min_labelled
            )));
        }
        if !policy.on_drift && policy.accuracy_below.is_none() {
            return Err(Error::Invalid(
                "the policy never triggers: set `on_drift` or `accuracy_below`".to_owned(),
            ));
        }
        let previous = self.policies.get(model)?;
        let record = PolicyRecord {
            model: model.to_owned(),
            policy,
            last_triggered_at: previous.as_ref().and_then(|p| p.last_triggered_at),
            last_job: previous.as_ref().and_then(|p| p.last_job.clone()),
            last_reason: previous.and_then(|p| p.last_reason),
        };
        self.policies.put(model, &record)?;
        Ok(record)
    }

    /// `model`'s policy.
    pub fn get(&self, model: &str) -> Result<PolicyRecord> {
        self.policies
            .get(model)?
            .ok_or_else(|| Error::NotFound(format!("model {model} has no retraining policy")))
    }

    /// Removes `model`'s policy.
    pub fn delete(&self, model: &str) -> Result<()> {
        if !self.policies.remove(model)? {
            return Err(Error::NotFound(format!(
                "model {model} has no retraining policy"
            )));
        }
        Ok(())
    }

    /// Acts on one monitor pass: submits a job for every policy that triggers.
    pub fn on_monitor_pass(&self, snapshot: &Snapshot, alerts: &[Alert]) {
        let policies = match self.policies.all() {
            Ok(policies) => policies,
            Err(err) => return tracing::error!(error = %err, "cannot read retraining policies"),
        };
        for mut record in policies {
            if let Err(err) = self.consider(&mut record, snapshot, alerts) {
                tracing::warn!(model = %record.model, error = %err, "retraining policy");
            }
        }
    }

    fn consider(
        &self,
        record: &mut PolicyRecord,
        snapshot: &Snapshot,
        alerts: &[Alert],
    ) -> Result<()> {
        let Some(trigger) = trigger(&record.model, &record.policy, alerts, snapshot) else {
            return Ok(());
        };
        let now = snapshot
            .now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if record
            .last_triggered_at
            .is_some_and(|at| now < at + record.policy.cooldown_seconds)
        {
            return Ok(());
        }
        if self
            .jobs
            .list()?
            .iter()
            .any(|job| job.request.model == record.model && !job.finished())
        {
            return Ok(());
        }
        let captured = CapturedData {
            groups: trigger.groups.iter().cloned().collect(),
            since_seconds: record.policy.capture_window_seconds,
        };
        let available = self.jobs.labelled_captures(&record.model, &captured)?;
        if available < record.policy.min_labelled {
            let waiting = format!(
                "{}; waiting for labels: {available} of {} labelled captures",
                trigger.reason, record.policy.min_labelled
            );
            if record.last_reason.as_deref() != Some(waiting.as_str()) {
                record.last_reason = Some(waiting);
                self.policies.put(&record.model, record)?;
            }
            return Ok(());
        }
        let job = self.jobs.submit(
            NewTrainingJob {
                model: record.model.clone(),
                spec: None,
                dataset: DatasetChoice {
                    uploaded: record.policy.reference_dataset.clone(),
                    label: record.policy.reference_label.clone(),
                    captured: Some(captured),
                },
                hyperparameters: record.policy.hyperparameters.clone(),
                executor: record.policy.executor,
                register: true,
                parent_version: serving_version(snapshot, &record.model, &trigger.groups),
                evaluation: Some(EvaluationPlan {
                    holdout_fraction: record.policy.holdout_fraction,
                    margin: record.policy.margin,
                }),
            },
            POLICY_ORIGIN,
        )?;
        tracing::info!(model = %record.model, job = %job.id, reason = %trigger.reason, "retraining");
        self.jobs
            .log(&job.id, format!("retraining policy: {}", trigger.reason));
        record.last_triggered_at = Some(now);
        record.last_job = Some(job.id);
        record.last_reason = Some(trigger.reason);
        self.policies.put(&record.model, record)?;
        Ok(())
    }

    /// After a policy's job: roll the registered candidate out, or wait for approval.
    fn job_finished(&self, job: &TrainingJob) {
        if job.origin != POLICY_ORIGIN || !job.registered {
            return;
        }
        let Ok(record) = self.get(&job.request.model) else {
            return;
        };
        if record.policy.rollout.approval {
            self.jobs.log(
                &job.id,
                "awaiting approval: POST /api/v1/training-jobs/{id}/approve starts the rollout"
                    .to_owned(),
            );
            return;
        }
        if let Err(err) = self.roll_out(job, &record.policy.rollout) {
            self.jobs
                .log(&job.id, format!("cannot start the rollout: {err}"));
        }
    }

    /// Starts the rollout of a policy job's version that waits for approval.
    pub fn approve(&self, id: &str) -> Result<TrainingJob> {
        let job = self.jobs.get(id)?;
        if job.origin != POLICY_ORIGIN || !job.registered || !job.rollouts.is_empty() {
            return Err(Error::Conflict(format!(
                "training job {id} has no version waiting for approval"
            )));
        }
        let record = self.get(&job.request.model)?;
        self.roll_out(&job, &record.policy.rollout)
    }

    /// Starts one canary rollout per group the job's data came from.
    fn roll_out(&self, job: &TrainingJob, plan: &PolicyRollout) -> Result<TrainingJob> {
        let version = job
            .version
            .ok_or_else(|| Error::Conflict(format!("training job {} has no version", job.id)))?;
        let groups = job
            .request
            .dataset
            .captured
            .as_ref()
            .map(|c| c.groups.clone())
            .unwrap_or_default();
        let mut updated = self.jobs.get(&job.id)?;
        for group in groups {
            let rollout = self.rollouts.start(&NewRollout {
                group: group.clone(),
                model: job.request.model.clone(),
                version: version.to_string(),
                stages: plan.stages.clone(),
                bake_seconds: plan.bake_seconds,
                gates: plan.gates.clone(),
                on_failure: plan.on_failure,
                shadow: false,
            })?;
            self.jobs.log(
                &job.id,
                format!(
                    "started canary rollout {} of version {version} to {group}",
                    rollout.id
                ),
            );
            updated.rollouts.push(rollout.id);
        }
        self.jobs.put(&updated)?;
        Ok(updated)
    }
}
