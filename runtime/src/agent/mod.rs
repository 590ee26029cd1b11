//! Agent mode (`edgewise-runtime run --config node.toml`): the node follows its signed
//! assignments. For each one it checks the envelope (signature, device, seq, expiry),
//! downloads the bundle (QUIC, resuming; HTTP `Range` as fallback), checks its hash,
//! release signature and self-test, then swaps the serving model atomically and keeps
//! the old one for fallback. Every step is reported on the retained `reported` topic;
//! anything refused leaves the serving model untouched.

pub mod download;
pub mod link;
pub mod store;
pub mod telemetry;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use edgewise_core::assignment::{Assignment, AssignmentMode, SignedAssignment};
use edgewise_core::bundle::sha256_hex;
use edgewise_core::keys::TrustStore;
use edgewise_core::node_config::NodeConfig;
use edgewise_core::reported::{InstalledVersion, KeyVersions, ReportedState, UpdatePhase};
use edgewise_core::rotation::{KeyRole, SignedKeyRotation, TrustState};
use edgewise_model::DeviceChoice;
use thiserror::Error;
use tokio::sync::{Semaphore, watch};

use crate::batcher::BatchingConfig;
use crate::loader::{SharedModels, open_bundle};
use crate::server::{ServingModel, ServingSlot};
use download::{DownloadError, DownloadSettings};
use store::{NodeStore, SeenAssignment, StoreError};

/// Longest pause between download retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How the agent serves what it installs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The node's data folder (sled store, bundles, partial downloads).
    pub data_dir: PathBuf,
    /// Where models run.
    pub device: DeviceChoice,
    /// Batching limits.
    pub batching: BatchingConfig,
    /// What this node shares with the other virtual nodes of a simulator process; none
    /// for a real node.
    pub shared: Option<SharedResources>,
    /// Disk space an update must leave free; an update that would leave less is
    /// refused before its download starts, and the serving model stays.
    pub min_free_disk: u64,
}

/// The default of [`AgentOptions::min_free_disk`]: room for the store to keep working.
pub const DEFAULT_MIN_FREE_DISK: u64 = 16 * 1024 * 1024;

/// What the virtual nodes of one simulator process share: one sled database (a pair of
/// trees per node, instead of a database and its flusher thread each) and one loaded
/// copy of each bundle.
#[derive(Debug, Clone)]
pub struct SharedResources {
    /// The database holding every node's trees.
    pub db: sled::Db,
    /// The models serving in the process.
    pub models: SharedModels,
    /// Bundle checks (hashing, signature verification, loading) run at once across the
    /// process's nodes. Unbounded, a fleet-wide update starts hundreds of blocking
    /// threads that crowd out the async ones, whose QUIC and MQTT connections then go
    /// silent long enough to time out.
    pub bundle_checks: Arc<Semaphore>,
}

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The node config's trust bundle or addresses are wrong.
    #[error("node config: {0}")]
    Config(String),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The update agent of one node.
pub struct Agent {
    device_id: String,
    /// The keys trusted now; key rotations in assignment envelopes replace them.
    trust: RwLock<TrustState>,
    downloads: DownloadSettings,
    store: NodeStore,
    slot: ServingSlot,
    options: AgentOptions,
    reports: watch::Sender<ReportedState>,
}

impl Agent {
    /// Prepares the agent; `reports` receives every new state to publish.
    pub fn new(
        config: &NodeConfig,
        options: AgentOptions,
        slot: ServingSlot,
    ) -> Result<(Self, watch::Receiver<ReportedState>), AgentError> {
        let mut trust = config.trust.trust_state().map_err(AgentError::Config)?;
        let downloads = DownloadSettings::from_config(config).map_err(AgentError::Config)?;
        let store = match &options.shared {
            Some(shared) => NodeStore::open_in(&shared.db, &options.data_dir, &config.device_id)?,
            None => NodeStore::open(&options.data_dir)?,
        };
        if let Err(err) = trust.apply_chain(&store.rotations()?) {
            tracing::error!(error = %err, "stored key rotations no longer verify; trusting the node config's keys");
        }
        let initial = ReportedState {
            device_id: config.device_id.clone(),
            active: store.active()?,
            previous: store.previous()?,
            shadow: store.shadow()?,
            phase: UpdatePhase::Idle,
            seq: store.last_seen()?.map_or(0, |seen| seen.seq),
            applied_seq: store.applied_seq()?,
            failure: None,
            backend: String::new(),
            adapter: String::new(),
            runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
            reported_at: now_rfc3339(),
            key_versions: key_versions(&trust),
        };
        crate::telemetry::register_agent_metrics();
        crate::telemetry::update_phase(initial.phase);
        let (reports, receiver) = watch::channel(initial);
        Ok((
            Agent {
                device_id: config.device_id.clone(),
                trust: RwLock::new(trust),
                downloads,
                store,
                slot,
                options,
                reports,
            },
            receiver,
        ))
    }

    /// Serves the last good model from the local store, if any: the active version, or
    /// the previous one if the active one no longer verifies. Returns what now serves.
    ///
    /// A stored bundle that no longer verifies (truncated, corrupted, tampered with on
    /// disk) is deleted; if it was the active one, the assignment that installed it
    /// counts as unfinished, so its redelivery downloads it again.
    pub async fn restore(&self) -> Option<InstalledVersion> {
        let active = self.store.active().ok().flatten();
        let previous = self.store.previous().ok().flatten();
        let mut active_refused = false;
        let mut serving = None;
        let candidates = [(true, active), (false, previous)];
        for (is_active, version) in candidates
            .into_iter()
            .filter_map(|(is_active, version)| Some((is_active, version?)))
        {
            // Installed before any later rotation: checked against every release key
            // this node has trusted, so a rotation never deletes a good model.
            let trust = self.trust_now().release.ever_trusted().clone();
            match self.open(&version, trust).await {
                Ok(model) => {
                    self.serve(model);
                    tracing::info!(model = %version.model, version = version.version, "serving the stored model");
                    serving = Some(version);
                    break;
                }
                Err(err) => {
                    metrics::counter!("edgewise_stored_bundles_refused_total").increment(1);
                    tracing::error!(model = %version.model, version = version.version, error = %err, "stored bundle refused; it will be downloaded again");
                    let _ = std::fs::remove_file(self.store.bundle_path(&version.bundle_sha256));
                    active_refused |= is_active;
                }
            }
        }
        if active_refused && let Err(err) = self.store.abandon_active(serving.as_ref()) {
            tracing::error!(error = %err, "cannot record the refused bundle");
        }
        serving
    }

    /// The node's local store.
    pub fn store(&self) -> NodeStore {
        self.store.clone()
    }

    /// Follows `desired` until the process ends; the newest assignment always wins.
    pub async fn run(self, mut desired: watch::Receiver<Option<Vec<u8>>>) {
        while desired.changed().await.is_ok() {
            let envelope = desired.borrow_and_update().clone();
            if let Some(envelope) = envelope {
                self.handle(&envelope, &desired).await;
            }
        }
    }

    /// Acts on one desired-topic payload.
    async fn handle(&self, envelope: &[u8], desired: &watch::Receiver<Option<Vec<u8>>>) {
        let envelope_sha256 = sha256_hex(envelope);
        let last_seen = self.store.last_seen().ok().flatten();
        let redelivered = last_seen
            .as_ref()
            .filter(|seen| seen.envelope_sha256 == envelope_sha256);
        let last_seq = match redelivered {
            // The retained assignment, redelivered after a reconnect, already acted on.
            Some(seen) if seen.finished => return,
            // Accepted before the node stopped in the middle of it: take it up again
            // (a download resumes from its partial file).
            Some(seen) => {
                tracing::info!(
                    seq = seen.seq,
                    "resuming an update interrupted by a restart"
                );
                seen.seq - 1
            }
            None => last_seen.map_or(0, |seen| seen.seq),
        };
        let assignment = match self.check_envelope(envelope, last_seq) {
            Ok(assignment) => assignment,
            Err(err) => {
                metrics::counter!("edgewise_assignments_refused_total").increment(1);
                tracing::warn!(error = %err, "assignment refused");
                self.report(
                    UpdatePhase::Failed,
                    None,
                    Some(format!("assignment refused: {err}")),
                );
                return;
            }
        };
        let mut seen = SeenAssignment {
            seq: assignment.seq,
            envelope_sha256,
            finished: false,
        };
        if let Err(err) = self.store.mark_seen(&seen) {
            tracing::error!(error = %err, "cannot record the assignment");
            return;
        }
        tracing::info!(seq = assignment.seq, model = %assignment.model, version = assignment.version, "assignment accepted");
        match self.apply(&assignment, desired).await {
            Ok(true) => {
                metrics::counter!("edgewise_updates_total", "outcome" => "applied").increment(1);
                self.report(UpdatePhase::Applied, Some(assignment.seq), None);
            }
            Ok(false) => tracing::info!(seq = assignment.seq, "superseded by a newer assignment"),
            Err(reason) => {
                metrics::counter!("edgewise_updates_total", "outcome" => "failed").increment(1);
                tracing::warn!(seq = assignment.seq, %reason, "update failed; the previous model keeps serving");
                self.report(UpdatePhase::Failed, Some(assignment.seq), Some(reason));
            }
        }
        seen.finished = true;
        if let Err(err) = self.store.mark_seen(&seen) {
            tracing::error!(error = %err, "cannot record the assignment as finished");
        }
    }

    /// Parses an envelope, applies the key rotations it carries, then checks the
    /// assignment against the deployment keys trusted after them.
    fn check_envelope(&self, envelope: &[u8], last_seq: u64) -> Result<Assignment, String> {
        let signed = SignedAssignment::from_bytes(envelope).map_err(|e| e.to_string())?;
        let deployment = if signed.rotations.is_empty() {
            self.trust_now().deployment.keys().clone()
        } else {
            self.rotate_keys(&signed.rotations)?
        };
        signed
            .verify(&deployment, &self.device_id, last_seq, SystemTime::now())
            .map_err(|e| e.to_string())
    }

    /// Applies a chain of key rotations and keeps the new ones; returns the deployment
    /// keys trusted now. A chain that does not verify changes nothing.
    fn rotate_keys(&self, chain: &[SignedKeyRotation]) -> Result<TrustStore, String> {
        let mut next = self.trust_now();
        let applied = next
            .apply_chain(chain)
            .map_err(|e| format!("key rotation refused: {e}"))?;
        if !applied.is_empty() {
            self.store
                .add_rotations(&applied)
                .map_err(|e| format!("cannot keep the key rotation: {e}"))?;
            for role in [KeyRole::Release, KeyRole::Deployment] {
                let trust = next.role(role);
                tracing::info!(%role, version = trust.version(), keys = ?trust.keys().key_ids(), "trusted keys rotated");
            }
            metrics::counter!("edgewise_key_rotations_total").increment(applied.len() as u64);
            let versions = key_versions(&next);
            self.reports
                .send_modify(|state| state.key_versions = versions);
            *self.trust.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
        }
        Ok(next.deployment.keys().clone())
    }

    /// A copy of the keys trusted now.
    fn trust_now(&self) -> TrustState {
        self.trust.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Downloads, verifies and installs the assigned bundle. `Ok(false)` when a newer
    /// assignment arrived first.
    async fn apply(
        &self,
        assignment: &Assignment,
        desired: &watch::Receiver<Option<Vec<u8>>>,
    ) -> Result<bool, String> {
        let wanted = InstalledVersion {
            model: assignment.model.clone(),
            version: assignment.version,
            bundle_sha256: assignment.bundle_sha256.clone(),
        };
        let shadow = assignment.mode == AssignmentMode::Shadow;
        let current = self
            .slot
            .current()
            .is_some()
            .then(|| self.store.active().ok().flatten())
            .flatten();
        if !shadow && current.as_ref() == Some(&wanted) {
            self.end_shadow()?;
            self.store
                .activate(&wanted, assignment.seq)
                .map_err(|e| e.to_string())?;
            return Ok(true);
        }
        let path = self.store.bundle_path(&assignment.bundle_sha256);
        // A bundle kept from before a release key rotation (a rollback target) was
        // checked when it arrived: any key this node trusted then still vouches for it.
        // A new download needs a key trusted now.
        let trust = if path.exists() {
            self.trust_now().release.ever_trusted().clone()
        } else {
            self.trust_now().release.keys().clone()
        };
        if !path.exists() {
            self.report(UpdatePhase::Downloading, Some(assignment.seq), None);
            if !self.download(assignment, desired).await? {
                return Ok(false);
            }
        }
        self.report(UpdatePhase::Verifying, Some(assignment.seq), None);
        fault_point("agent::verify").await;
        let model = match self.open(&wanted, trust).await {
            Ok(model) => model,
            Err(reason) => {
                let _ = std::fs::remove_file(&path);
                return Err(reason);
            }
        };
        if model.info.name != assignment.model || model.version != assignment.version {
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "bundle holds {} version {}, the assignment names {} version {}",
                model.info.name, model.version, assignment.model, assignment.version
            ));
        }
        if shadow {
            self.slot.install_shadow(Some(model));
            self.store
                .set_shadow(Some(&wanted), Some(assignment.seq))
                .map_err(|e| e.to_string())?;
            tracing::info!(model = %wanted.model, version = wanted.version, "running in shadow");
            return Ok(true);
        }
        self.serve(model);
        // The new model serves, and the store does not say so yet.
        fault_point("agent::activate").await;
        self.end_shadow()?;
        self.store
            .activate(&wanted, assignment.seq)
            .map_err(|e| e.to_string())?;
        tracing::info!(model = %wanted.model, version = wanted.version, "now serving");
        Ok(true)
    }

    /// Stops any shadow candidate: an active assignment replaces shadow mode.
    fn end_shadow(&self) -> Result<(), String> {
        self.slot.install_shadow(None);
        self.store.set_shadow(None, None).map_err(|e| e.to_string())
    }

    /// Fetches the bundle into the store, trying each location and retrying broken
    /// transfers from where they stopped. `Ok(false)` when a newer assignment arrived.
    async fn download(
        &self,
        assignment: &Assignment,
        desired: &watch::Receiver<Option<Vec<u8>>>,
    ) -> Result<bool, String> {
        let partial = self.store.partial_path(&assignment.bundle_sha256);
        self.check_disk_space(assignment, &partial)?;
        let mut delay = Duration::from_millis(250);
        let mut fresh_start_left = true;
        'attempts: loop {
            for location in &assignment.locations {
                match download::fetch(
                    location,
                    &self.downloads,
                    &assignment.bundle_sha256,
                    assignment.size,
                    &partial,
                )
                .await
                {
                    Ok(done) => {
                        tracing::info!(%location, bytes = done.bytes, resumed_from = done.resumed_from, "download complete");
                        match self.finish_download(assignment, &partial).await {
                            Ok(()) => return Ok(true),
                            // Bytes kept from an earlier attempt (or an earlier run) may
                            // be what is wrong: the check deleted them, so download once
                            // more from the start before giving up.
                            Err(reason) if done.resumed_from > 0 && fresh_start_left => {
                                tracing::warn!(%reason, "a resumed download did not check out; downloading it again from the start");
                                fresh_start_left = false;
                                continue 'attempts;
                            }
                            Err(reason) => return Err(reason),
                        }
                    }
                    Err(DownloadError::Permanent(reason)) => return Err(reason),
                    Err(err) => {
                        tracing::warn!(error = %err, "download attempt failed");
                        // A disk that filled up meanwhile ends the update, not a retry loop.
                        self.check_disk_space(assignment, &partial)?;
                    }
                }
            }
            if desired.has_changed().unwrap_or(false) {
                return Ok(false);
            }
            if SystemTime::now() > expiry(assignment) {
                return Err("the assignment expired before its bundle could be downloaded".into());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Errors unless the rest of the bundle fits on the disk with
    /// [`AgentOptions::min_free_disk`] to spare.
    fn check_disk_space(&self, assignment: &Assignment, partial: &Path) -> Result<(), String> {
        let folder = partial.parent().unwrap_or(partial);
        let held = std::fs::metadata(partial).map_or(0, |m| m.len());
        let needed = assignment.size.saturating_sub(held);
        let free = fs2::available_space(folder).map_err(|e| {
            format!(
                "cannot read the free disk space of {}: {e}",
                folder.display()
            )
        })?;
        if free < needed.saturating_add(self.options.min_free_disk) {
            metrics::counter!("edgewise_updates_refused_disk_total").increment(1);
            return Err(format!(
                "not enough disk space: the bundle needs {needed} more bytes and {} must stay free, {free} bytes are free in {}",
                self.options.min_free_disk,
                folder.display()
            ));
        }
        Ok(())
    }

    /// Checks the downloaded bytes against the assigned hash and moves them into place,
    /// off the async threads (hashing a large bundle takes milliseconds of CPU).
    async fn finish_download(
        &self,
        assignment: &Assignment,
        partial: &std::path::Path,
    ) -> Result<(), String> {
        let expected = assignment.bundle_sha256.clone();
        let partial = partial.to_owned();
        let destination = self.store.bundle_path(&assignment.bundle_sha256);
        self.check_off_thread(move || install_download(&partial, &expected, &destination))
            .await
            .map_err(|e| format!("checking the download panicked: {e}"))?
    }

    /// Runs CPU-heavy bundle work on the blocking pool, holding one of the process's
    /// [`SharedResources::bundle_checks`] permits when nodes share the process.
    async fn check_off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let _permit = match &self.options.shared {
            // The semaphore is never closed; a closed one would mean no limit.
            Some(shared) => shared.bundle_checks.clone().acquire_owned().await.ok(),
            None => None,
        };
        tokio::task::spawn_blocking(work).await
    }

    /// Verifies an installed bundle against the release keys `trust` and starts it
    /// serving, off the async threads.
    async fn open(
        &self,
        version: &InstalledVersion,
        trust: TrustStore,
    ) -> Result<Arc<ServingModel>, String> {
        let path = self.store.bundle_path(&version.bundle_sha256);
        let device = self.options.device;
        let batching = self.options.batching;
        let shared = self.options.shared.as_ref().map(|s| s.models.clone());
        self.check_off_thread(move || open_bundle(&path, &trust, device, batching, shared.as_ref()))
            .await
            .map_err(|e| format!("loading the bundle panicked: {e}"))?
            .map_err(|e| format!("bundle refused: {e}"))
    }

    /// Swaps `model` in as the serving model and records its backend for reports.
    fn serve(&self, model: Arc<ServingModel>) {
        let backend = if model.device.is_gpu { "gpu" } else { "cpu" }.to_owned();
        let adapter = model.device.description.clone();
        self.slot.install(model);
        self.reports.send_modify(|state| {
            state.backend = backend;
            state.adapter = adapter;
        });
    }

    /// Publishes a new report with `phase`.
    fn report(&self, phase: UpdatePhase, seq: Option<u64>, failure: Option<String>) {
        let active = self.store.active().ok().flatten();
        let previous = self.store.previous().ok().flatten();
        let shadow = self.store.shadow().ok().flatten();
        let applied_seq = self.store.applied_seq().unwrap_or(0);
        crate::telemetry::update_phase(phase);
        self.reports.send_modify(|state| {
            state.phase = phase;
            if let Some(seq) = seq {
                state.seq = seq;
            }
            state.failure = failure;
            state.active = active;
            state.previous = previous;
            state.shadow = shadow;
            state.applied_seq = applied_seq;
            state.reported_at = now_rfc3339();
        });
    }
}

/// The fault injection point `name` (`failpoints` feature, configured by FAILPOINTS):
/// `NAME=return(MS)` holds this update for MS milliseconds on a timer, so the rest of
/// the node (its MQTT link, its HTTP server) carries on meanwhile.
async fn fault_point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    {
        let hold = (|| {
            fail::fail_point!(name, |arg| arg.and_then(|ms| ms.parse::<u64>().ok()));
            None
        })();
        if let Some(ms) = hold {
            tracing::warn!(point = name, ms, "fault injection: holding the update");
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Moves the downloaded `partial` to `destination` when its bytes hash to `expected`;
/// removes it when they do not.
fn install_download(partial: &Path, expected: &str, destination: &Path) -> Result<(), String> {
    let bytes = std::fs::read(partial).map_err(|e| format!("cannot read the download: {e}"))?;
    let actual = sha256_hex(&bytes);
    if actual != expected {
        let _ = std::fs::remove_file(partial);
        return Err(format!(
            "bundle hash mismatch: downloaded bytes hash to {actual}, the assignment names {expected}"
        ));
    }
    std::fs::rename(partial, destination).map_err(|e| format!("cannot install the bundle: {e}"))
}

/// The assignment's expiry instant (now, if unreadable: it was checked on arrival).
fn expiry(assignment: &Assignment) -> SystemTime {
    humantime::parse_rfc3339_weak(&assignment.expires_at).unwrap_or_else(|_| SystemTime::now())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The key set versions of `trust`, for reports.
fn key_versions(trust: &TrustState) -> KeyVersions {
    KeyVersions {
        release: trust.release.version(),
        deployment: trust.deployment.version(),
    }
}
