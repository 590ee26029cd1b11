//! The rollout driver: once a second it moves each running rollout along. It grows
//! the current stage's cohort from online devices, tracks their updates (a device that
//! stays silent past its update timeout counts as failed), and once the bake time is
//! over judges the gates: pass goes to the next stage, fail rolls back or pauses, too
//! little data waits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use edgewise_core::assignment::AssignmentMode;

use super::cohort;
use super::gates::{self, Evidence, UpdateOutcome, Verdict};
use super::{RolloutRecord, RolloutState, StageRecord, now_rfc3339, now_seconds};
use crate::deploy::Deployer;
use crate::error::{Error, Result};
use crate::store::{DeviceRecord, GroupTarget, version_key};
use crate::telemetry_fold::WindowSums;
use crate::telemetry_store::{TelemetryQuery, TelemetryStore};

/// How much of the old version's most recent telemetry serves as the baseline when no
/// device runs it any more.
const RECENT_BASELINE_SECONDS: u64 = 60;

/// How far back before the rollout started the baseline's windows reach.
const BASELINE_LOOKBACK_SECONDS: u64 = 600;

/// Drives every running rollout until the process ends.
pub async fn run(deployer: Deployer, telemetry: TelemetryStore) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let (deployer_now, telemetry_now) = (deployer.clone(), telemetry.clone());
        let outcome =
            tokio::task::spawn_blocking(move || tick(&deployer_now, &telemetry_now)).await;
        match outcome {
            Ok(Ok(to_publish)) => deployer.publish(&to_publish).await,
            Ok(Err(err)) => tracing::error!(error = %err, "rollout driver"),
            Err(err) => tracing::error!(error = %err, "rollout driver panicked"),
        }
    }
}

/// One pass over the running rollouts; returns the devices whose assignment changed.
fn tick(deployer: &Deployer, telemetry: &TelemetryStore) -> Result<Vec<DeviceRecord>> {
    let store = deployer.store();
    let table = store.table::<RolloutRecord>("rollouts")?;
    let mut to_publish = Vec::new();
    // Only the state of each rollout to find the running ones: a finished rollout of
    // 10,000 devices is megabytes that need not be decoded every second.
    for (id, header) in store.table::<RolloutHeader>("rollouts")?.scan("")? {
        if header.state != RolloutState::Running {
            continue;
        }
        let _guard = store.lock();
        let Some(mut rollout) = table.get(&id)? else {
            continue;
        };
        if rollout.state != RolloutState::Running {
            continue;
        }
        let before = Progress::of(&rollout);
        to_publish.extend(step(deployer, telemetry, &mut rollout)?);
        if Progress::of(&rollout) != before {
            table.put(&rollout.id, &rollout)?;
            store.flush()?;
        }
    }
    Ok(to_publish)
}

/// The one field of a stored rollout the driver needs to pick the running ones.
#[derive(serde::Deserialize)]
struct RolloutHeader {
    state: RolloutState,
}

/// The parts of a rollout record a tick can change, cheap to compare. A tick that
/// changed none of them (devices still updating) leaves the stored record alone: at
/// 10,000 devices the record is megabytes, and rewriting and flushing it every second
/// under the store lock held up the devices' reports.
#[derive(PartialEq)]
struct Progress {
    state: RolloutState,
    stage: usize,
    settled_at: Option<u64>,
    moved: usize,
    stages_recorded: usize,
    audit: usize,
    judgement: Option<String>,
}

impl Progress {
    fn of(rollout: &RolloutRecord) -> Self {
        Progress {
            state: rollout.state,
            stage: rollout.stage,
            settled_at: rollout.settled_at,
            moved: rollout.moved.len(),
            stages_recorded: rollout.stage_results.len(),
            audit: rollout.audit.len(),
            judgement: rollout.stage_results.last().map(|stage| {
                serde_json::to_string(&(&stage.verdict, &stage.gates)).unwrap_or_default()
            }),
        }
    }
}

/// Moves one rollout along (the caller holds the store lock).
fn step(
    deployer: &Deployer,
    telemetry: &TelemetryStore,
    rollout: &mut RolloutRecord,
) -> Result<Vec<DeviceRecord>> {
    let mut changed = grow_cohort(deployer, rollout)?;
    let now = now_seconds();
    let updates = update_outcome(deployer, rollout, now);
    // The bake starts once every device of the stage has settled (applied or failed):
    // what happens while models load is not the model's doing.
    let settled_at = match rollout.settled_at {
        Some(at) => at,
        None if updates.applied + updates.failed >= updates.cohort => {
            rollout.settled_at = Some(now);
            rollout.record(
                "stage_settled",
                format!(
                    "{} applied, {} failed; baking {}s",
                    updates.applied, updates.failed, rollout.bake_seconds
                ),
            );
            now
        }
        None => return Ok(changed),
    };
    if now < settled_at + rollout.bake_seconds {
        return Ok(changed);
    }
    let results = judge(deployer, telemetry, rollout, updates)?;
    let verdict = gates::overall(&results);
    if let Some(stage) = rollout.stage_results.last_mut() {
        stage.verdict = Some(verdict);
        stage.gates = results.clone();
    }
    if verdict != Verdict::Wait {
        for result in results.iter().filter(|r| r.verdict != Verdict::Wait) {
            metrics::counter!(
                "edgewise_rollout_gate_verdicts_total",
                "group" => rollout.group.clone(),
                "gate" => result.name.clone(),
                "verdict" => if result.verdict == Verdict::Pass { "pass" } else { "fail" }
            )
            .increment(1);
        }
    }
    match verdict {
        Verdict::Wait => {}
        Verdict::Pass => {
            rollout.record(
                "stage_passed",
                format!(
                    "stage {} ({}%) passed every gate",
                    rollout.stage + 1,
                    rollout.stages[rollout.stage]
                ),
            );
            changed.extend(advance(deployer, rollout)?);
        }
        Verdict::Fail => {
            let failed: Vec<String> = results
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(|r| format!("{}: {}", r.name, r.detail))
                .collect();
            let reason = format!("stage {} failed {}", rollout.stage + 1, failed.join("; "));
            metrics::counter!(
                "edgewise_rollouts_halted_total",
                "group" => rollout.group.clone(),
                "model" => rollout.model.clone()
            )
            .increment(1);
            rollout.record("gate_failed", reason.clone());
            match rollout.on_failure {
                super::OnFailure::Rollback => {
                    changed.extend(roll_back(deployer, rollout, &reason)?)
                }
                super::OnFailure::Pause => {
                    rollout.state = RolloutState::Paused;
                    rollout.reason = Some(reason);
                    rollout.record("paused", "a gate failed; waiting for an operator");
                }
            }
        }
    }
    Ok(changed)
}

/// Whether the current stage runs the candidate in shadow (the first stage of a
/// shadow rollout) or serves it.
fn stage_mode(rollout: &RolloutRecord) -> AssignmentMode {
    if rollout.shadow && rollout.stage == 0 {
        AssignmentMode::Shadow
    } else {
        AssignmentMode::Active
    }
}

/// Adds online devices, in cohort order, until the stage holds its share of the group.
fn grow_cohort(deployer: &Deployer, rollout: &mut RolloutRecord) -> Result<Vec<DeviceRecord>> {
    let store = deployer.store();
    let devices: Vec<Arc<DeviceRecord>> = store
        .devices
        .all_shared()
        .into_iter()
        .filter(|d| d.is_active_in(&rollout.group))
        .collect();
    let wanted = cohort::stage_size(rollout.stages[rollout.stage], devices.len());
    if rollout.stage_results.len() <= rollout.stage {
        rollout.stage_results.push(StageRecord {
            stage: rollout.stage,
            percent: rollout.stages[rollout.stage],
            devices: Vec::new(),
            started_at: now_rfc3339(),
            verdict: None,
            gates: Vec::new(),
        });
    }
    let candidate = deployer
        .registry()
        .resolve(&rollout.model, &rollout.version.to_string())?;
    let mut changed = Vec::new();
    let online: BTreeSet<&str> = devices
        .iter()
        .filter(|d| d.online)
        .map(|d| d.id.as_str())
        .collect();
    // Once the stage is full (most ticks) there is nothing to order.
    let order = if rollout.moved.len() < wanted {
        cohort::order(devices.iter().map(Arc::as_ref))
    } else {
        Vec::new()
    };
    for id in order {
        if rollout.moved.len() >= wanted {
            break;
        }
        if rollout.moved.contains_key(&id) || !online.contains(id.as_str()) {
            continue;
        }
        let Some(mut device) = store.devices.get(&id)? else {
            continue;
        };
        deployer.assign_tagged(
            &mut device,
            &candidate,
            &rollout.id,
            Some(rollout.stage as u32),
            stage_mode(rollout),
        )?;
        rollout.moved.insert(
            id.clone(),
            super::MovedDevice {
                stage: rollout.stage,
                seq: device.seq,
                assigned_at: now_seconds(),
            },
        );
        rollout.record(
            "device_assigned",
            format!(
                "{id} → version {} in stage {}",
                rollout.version,
                rollout.stage + 1
            ),
        );
        changed.push(device);
    }
    if let Some(stage) = rollout.stage_results.last_mut() {
        stage.devices = rollout.moved.keys().cloned().collect();
    }
    Ok(changed)
}

/// How the moved devices took the candidate; a device past its timeout has failed.
fn update_outcome(deployer: &Deployer, rollout: &RolloutRecord, now: u64) -> UpdateOutcome {
    let mut outcome = UpdateOutcome {
        cohort: rollout.moved.len(),
        ..UpdateOutcome::default()
    };
    for (id, moved) in &rollout.moved {
        let device = deployer.store().devices.get_shared(id);
        let reported = device.as_ref().and_then(|d| d.reported.as_ref());
        let shadow = stage_mode(rollout) == AssignmentMode::Shadow;
        let applied = reported.is_some_and(|r| {
            let running = if shadow { &r.shadow } else { &r.active };
            r.applied_seq >= moved.seq
                && running
                    .as_ref()
                    .is_some_and(|a| a.version == rollout.version)
        });
        let refused = reported.is_some_and(|r| {
            r.seq >= moved.seq && r.phase == edgewise_core::reported::UpdatePhase::Failed
        });
        let timed_out = now > moved.assigned_at + rollout.gates.update_timeout_seconds;
        if applied {
            outcome.applied += 1;
        } else if refused || timed_out {
            outcome.failed += 1;
        }
    }
    outcome
}

/// Judges the stage's gates on the telemetry since it started.
fn judge(
    deployer: &Deployer,
    telemetry: &TelemetryStore,
    rollout: &RolloutRecord,
    updates: UpdateOutcome,
) -> Result<Vec<gates::GateResult>> {
    let now = now_seconds();
    let group_since = rollout.started_at.saturating_sub(BASELINE_LOOKBACK_SECONDS);
    let group_query = |since: u64| TelemetryQuery {
        group: Some(rollout.group.clone()),
        model: Some(rollout.model.clone()),
        since_seconds: Some(now.saturating_sub(since)),
        ..TelemetryQuery::default()
    };
    // Judge only what happened after the stage settled.
    let since = rollout.settled_at.unwrap_or(rollout.stage_started_at);
    let shadow = stage_mode(rollout) == AssignmentMode::Shadow;
    let mut canary = WindowSums::default();
    let mut same_period = WindowSums::default();
    let mut last_before_stage = None;
    telemetry.for_each_window(&group_query(group_since), |stored| {
        let window = &stored.window;
        let on_candidate = if shadow {
            window
                .shadow
                .as_ref()
                .is_some_and(|w| w.version == rollout.version)
        } else {
            window.version == rollout.version
        };
        if on_candidate
            && stored.received_at >= since
            && rollout.moved.contains_key(&window.device_id)
        {
            canary.add(window);
        }
        if window.version == rollout.baseline_version {
            if stored.received_at >= since {
                same_period.add(window);
            }
            if stored.received_at < rollout.stage_started_at {
                last_before_stage = last_before_stage.max(Some(stored.received_at));
            }
        }
    })?;
    // The baseline is what the old version did over the same period, so both sides
    // saw the same load; only when that is too thin does it reach further back.
    let baseline = if same_period.summary().requests >= rollout.gates.min_requests {
        same_period
    } else {
        // No old version left in the group (the last stage): its most recent minute.
        let recent_since = last_before_stage
            .unwrap_or(0)
            .saturating_sub(RECENT_BASELINE_SECONDS)
            .max(group_since);
        let mut recent = WindowSums::default();
        telemetry.for_each_window(&group_query(recent_since), |stored| {
            if stored.window.version == rollout.baseline_version {
                recent.add(&stored.window);
            }
        })?;
        recent
    };
    let record = deployer
        .store()
        .versions
        .get(&version_key(&rollout.model, rollout.version))?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "{} version {} is no longer registered",
                rollout.model, rollout.version
            ))
        })?;
    let evidence = Evidence {
        updates,
        canary,
        baseline,
        profile: &record.manifest.profile,
        shadow,
    };
    Ok(gates::judge(&rollout.gates, &evidence))
}

/// Moves to the next stage, or completes the rollout after the last one (the caller
/// holds the lock). Returns the devices whose assignment changed.
pub(super) fn advance(
    deployer: &Deployer,
    rollout: &mut RolloutRecord,
) -> Result<Vec<DeviceRecord>> {
    let mut changed = Vec::new();
    if stage_mode(rollout) == AssignmentMode::Shadow {
        // The shadow stage passed: its devices now serve the candidate.
        let candidate = deployer
            .registry()
            .resolve(&rollout.model, &rollout.version.to_string())?;
        for (id, moved) in rollout.moved.iter_mut() {
            if let Some(mut device) = deployer.store().devices.get(id)? {
                deployer.assign_tagged(
                    &mut device,
                    &candidate,
                    &rollout.id,
                    Some(1),
                    AssignmentMode::Active,
                )?;
                moved.seq = device.seq;
                moved.assigned_at = now_seconds();
                changed.push(device);
            }
        }
    }
    if rollout.stage + 1 < rollout.stages.len() {
        rollout.stage += 1;
        rollout.stage_started_at = now_seconds();
        rollout.settled_at = None;
        rollout.record(
            "stage_started",
            format!(
                "stage {} ({}%)",
                rollout.stage + 1,
                rollout.stages[rollout.stage]
            ),
        );
        changed.extend(grow_cohort(deployer, rollout)?);
        return Ok(changed);
    }
    // The last stage passed: every remaining device of the group (offline ones too,
    // which apply it when they return) gets the candidate, and it becomes the target.
    let store = deployer.store();
    let candidate = deployer
        .registry()
        .resolve(&rollout.model, &rollout.version.to_string())?;
    for mut device in store
        .devices
        .all()?
        .into_iter()
        .filter(|d| d.is_active_in(&rollout.group))
    {
        if !rollout.moved.contains_key(&device.id) {
            deployer.assign_tagged(
                &mut device,
                &candidate,
                &rollout.id,
                Some(rollout.stage as u32),
                AssignmentMode::Active,
            )?;
            rollout.moved.insert(
                device.id.clone(),
                super::MovedDevice {
                    stage: rollout.stage,
                    seq: device.seq,
                    assigned_at: now_seconds(),
                },
            );
            changed.push(device);
        }
    }
    store.groups.put(
        &rollout.group,
        &GroupTarget {
            model: rollout.model.clone(),
            version: rollout.version,
            deployment_id: rollout.id.clone(),
        },
    )?;
    rollout.state = RolloutState::Completed;
    rollout.record(
        "completed",
        format!(
            "group {} runs {} version {}",
            rollout.group, rollout.model, rollout.version
        ),
    );
    Ok(changed)
}

/// Sends every moved device back to the baseline version and ends the rollout (the
/// caller holds the lock). No other device is touched.
pub(super) fn roll_back(
    deployer: &Deployer,
    rollout: &mut RolloutRecord,
    reason: &str,
) -> Result<Vec<DeviceRecord>> {
    let store = deployer.store();
    let baseline = deployer
        .registry()
        .resolve(&rollout.model, &rollout.baseline_version.to_string())?;
    let mut changed = Vec::new();
    for id in rollout.moved.keys() {
        if let Some(mut device) = store.devices.get(id)? {
            deployer.assign_tagged(
                &mut device,
                &baseline,
                &rollout.id,
                Some(rollout.stage as u32),
                AssignmentMode::Active,
            )?;
            changed.push(device);
        }
    }
    rollout.state = RolloutState::RolledBack;
    rollout.reason = Some(reason.to_owned());
    rollout.record(
        "rolled_back",
        format!(
            "{} device(s) sent back to version {}: {reason}",
            changed.len(),
            rollout.baseline_version
        ),
    );
    Ok(changed)
}
