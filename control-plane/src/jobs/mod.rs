//! Training jobs: requests to train a new version of a model, kept in a queue and run
//! one at a time by an executor. The control plane never links burn: the local executor
//! runs `edgewise-train` as a child process; the others hand the same command to a
//! Kubernetes Job or a SageMaker training job. A finished bundle is signed with the
//! automation release key, optionally compared with its parent on held-out recent
//! data, and registered with its lineage.

pub mod dataset;
pub mod kubernetes;
mod local;
pub mod record;
pub mod sagemaker;
mod trainer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::store::{Store, Table};
use crate::telemetry_store::TelemetryStore;
use dataset::{CaptureSource, Datasets};
use record::{JobState, NewTrainingJob, TrainingJob};

/// Lines of log kept per job.
const MAX_LOG_LINES: u64 = 20_000;

/// How the control plane trains.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// The `edgewise-train` binary.
    pub trainer: PathBuf,
    /// The release key that signs trained bundles.
    pub signing_key: PathBuf,
    /// Where jobs keep their files.
    pub work_dir: PathBuf,
    /// The Kubernetes executor's settings.
    pub kubernetes: kubernetes::KubernetesSettings,
    /// The SageMaker executor's settings.
    pub sagemaker: sagemaker::SagemakerSettings,
}

/// Called when a job finishes.
pub type FinishedHook = Box<dyn Fn(&TrainingJob) + Send + Sync>;

/// The job queue and its worker.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    jobs: Table<TrainingJob>,
    logs: Table<String>,
    registry: Registry,
    datasets: Datasets,
    telemetry: TelemetryStore,
    settings: JobSettings,
    running: Mutex<BTreeMap<String, CancellationToken>>,
    /// The next log line number of each job logged to since the start.
    log_lines: Mutex<BTreeMap<String, u64>>,
    wake: Notify,
    on_finished: Mutex<Vec<FinishedHook>>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Jobs {
    /// The job queue in `store`; call [`Jobs::start`] to run it.
    pub fn new(
        store: Store,
        registry: Registry,
        datasets: Datasets,
        telemetry: TelemetryStore,
        settings: JobSettings,
    ) -> Result<Self> {
        Ok(Jobs {
            inner: Arc::new(Inner {
                jobs: store.table("training_jobs")?,
                logs: store.table("training_job_logs")?,
                store,
                registry,
                datasets,
                telemetry,
                settings,
                running: Mutex::new(BTreeMap::new()),
                log_lines: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                on_finished: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Where jobs keep their files (one folder per job).
    pub fn work_dir(&self) -> &std::path::Path {
        &self.inner.settings.work_dir
    }

    /// Uploaded datasets.
    pub fn datasets(&self) -> &Datasets {
        &self.inner.datasets
    }

    /// Calls `hook` with every job that finishes from now on.
    pub fn on_finished(&self, hook: FinishedHook) {
        self.inner
            .on_finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// Starts the worker; jobs left running by a previous process fail first.
    pub fn start(&self) -> Result<()> {
        for mut job in self.inner.jobs.all()? {
            if job.state == JobState::Running {
                job.state = JobState::Failed;
                job.error = Some("the control plane restarted while it ran".to_owned());
                job.finished_at = Some(now_rfc3339());
                self.inner.jobs.put(&job.id, &job)?;
            }
        }
        let jobs = self.clone();
        tokio::spawn(async move {
            loop {
                match jobs.next_queued() {
                    Ok(Some(job)) => jobs.run(job).await,
                    Ok(None) => {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            jobs.inner.wake.notified(),
                        )
                        .await;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "training queue");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Queues a job.
    pub fn submit(&self, request: NewTrainingJob, origin: &str) -> Result<TrainingJob> {
        crate::registry::check_name("field `model`: model", &request.model)?;
        if request.dataset.uploaded.is_none() && request.dataset.captured.is_none() {
            return Err(Error::Invalid(
                "field `dataset`: name an `uploaded` dataset, `captured` data, or both".to_owned(),
            ));
        }
        if let Some(id) = &request.dataset.uploaded
            && !self
                .inner
                .datasets
                .list()?
                .iter()
                .any(|dataset| &dataset.id == id)
        {
            return Err(Error::NotFound(format!(
                "field `dataset.uploaded`: no dataset {id}"
            )));
        }
        let parent = self.parent_version(&request)?;
        if parent.is_none() && (request.spec.is_none() || request.dataset.uploaded.is_none()) {
            return Err(Error::Invalid(format!(
                "model {} has no version yet: give `spec` and an `uploaded` dataset",
                request.model
            )));
        }
        if let Some(plan) = &request.evaluation
            && !(0.05..=0.5).contains(&plan.holdout_fraction)
        {
            return Err(Error::Invalid(format!(
                "field `evaluation.holdout_fraction`: expected 0.05 to 0.5, got {}",
                plan.holdout_fraction
            )));
        }
        let guard = self.inner.store.lock();
        let number = self
            .inner
            .jobs
            .all()?
            .iter()
            .map(|job| job_number(&job.id))
            .max()
            .unwrap_or(0)
            + 1;
        let job = TrainingJob {
            id: format!("tj-{number}"),
            origin: origin.to_owned(),
            request,
            state: JobState::Queued,
            version: None,
            parent_version: parent,
            data: None,
            created_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            bundle_sha256: None,
            metrics: None,
            evaluation: None,
            registered: false,
            rollouts: Vec::new(),
            error: None,
        };
        self.inner.jobs.put(&job.id, &job)?;
        self.inner.store.flush()?;
        drop(guard);
        self.log(
            &job.id,
            format!("queued ({} executor)", executor_name(&job)),
        );
        self.inner.wake.notify_one();
        Ok(job)
    }

    /// The version a request retrains from: the one it names, or the newest.
    fn parent_version(&self, request: &NewTrainingJob) -> Result<Option<u64>> {
        if let Some(version) = request.parent_version {
            self.inner
                .registry
                .resolve(&request.model, &version.to_string())?;
            return Ok(Some(version));
        }
        match self.inner.registry.versions(&request.model) {
            Ok(versions) => Ok(versions.iter().map(|v| v.version).max()),
            Err(Error::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every job, newest first.
    pub fn list(&self) -> Result<Vec<TrainingJob>> {
        let mut jobs = self.inner.jobs.all()?;
        jobs.sort_by_key(|job| std::cmp::Reverse(job_number(&job.id)));
        Ok(jobs)
    }

    /// One job.
    pub fn get(&self, id: &str) -> Result<TrainingJob> {
        self.inner
            .jobs
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no training job {id}")))
    }

    /// Stores a changed job.
    pub fn put(&self, job: &TrainingJob) -> Result<()> {
        self.inner.jobs.put(&job.id, job)?;
        Ok(self.inner.store.flush()?)
    }

    /// Cancels a queued or running job.
    pub fn cancel(&self, id: &str) -> Result<TrainingJob> {
        let mut job = self.get(id)?;
        match job.state {
            JobState::Queued => {
                job.state = JobState::Cancelled;
                job.finished_at = Some(now_rfc3339());
                self.put(&job)?;
                self.log(id, "cancelled before it started".to_owned());
            }
            JobState::Running => {
                if let Some(token) = self.running_token(id) {
                    token.cancel();
                }
            }
            _ => {
                return Err(Error::Conflict(format!(
                    "training job {id} already finished ({:?})",
                    job.state
                )));
            }
        }
        Ok(job)
    }

    fn running_token(&self, id: &str) -> Option<CancellationToken> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Log lines of job `id` from line `from` on, and the number of the next line.
    pub fn logs(&self, id: &str, from: u64) -> Result<(Vec<String>, u64)> {
        self.get(id)?;
        let lines: Vec<String> = self
            .inner
            .logs
            .scan_from(&format!("{id}/{from:08}"))?
            .into_iter()
            .take_while(|(key, _)| key.starts_with(&format!("{id}/")))
            .map(|(_, line)| line)
            .collect();
        let next = from + lines.len() as u64;
        Ok((lines, next))
    }

    /// Appends a line to a job's log.
    pub fn log(&self, id: &str, line: String) {
        let mut counters = self
            .inner
            .log_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let next = counters.entry(id.to_owned()).or_insert_with(|| {
            self.inner
                .logs
                .scan(&format!("{id}/"))
                .map_or(0, |lines| lines.len() as u64)
        });
        if *next >= MAX_LOG_LINES {
            return;
        }
        match self.inner.logs.put(&format!("{id}/{next:08}"), &line) {
            Ok(()) => *next += 1,
            Err(err) => tracing::warn!(job = id, error = %err, "cannot store a log line"),
        }
    }

    fn next_queued(&self) -> Result<Option<TrainingJob>> {
        Ok(self
            .inner
            .jobs
            .all()?
            .into_iter()
            .filter(|job| job.state == JobState::Queued)
            .min_by_key(|job| job_number(&job.id)))
    }

    /// Runs one job to its end.
    async fn run(&self, mut job: TrainingJob) {
        let token = CancellationToken::new();
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), token.clone());
        job.state = JobState::Running;
        job.started_at = Some(now_rfc3339());
        if let Err(err) = self.put(&job) {
            tracing::error!(job = %job.id, error = %err, "cannot start a training job");
        }
        let outcome = trainer::execute(self, &mut job, token.clone()).await;
        job.finished_at = Some(now_rfc3339());
        match outcome {
            Ok(()) => job.state = JobState::Succeeded,
            Err(_) if token.is_cancelled() => {
                job.state = JobState::Cancelled;
                self.log(&job.id, "cancelled".to_owned());
            }
            Err(reason) => {
                self.log(&job.id, format!("failed: {reason}"));
                job.state = JobState::Failed;
                job.error = Some(reason);
            }
        }
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);
        if let Err(err) = self.put(&job) {
            tracing::error!(job = %job.id, error = %err, "cannot record a finished training job");
        }
        tracing::info!(job = %job.id, state = ?job.state, version = ?job.version, registered = job.registered, "training job finished");
        for hook in self
            .inner
            .on_finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook(&job);
        }
    }

    /// How many labelled captures of `model` match `wanted` (with the newest version's
    /// feature count).
    pub fn labelled_captures(&self, model: &str, wanted: &dataset::CapturedData) -> Result<usize> {
        let newest = self
            .inner
            .registry
            .versions(model)
            .ok()
            .and_then(|versions| versions.iter().map(|v| v.version).max());
        let Some(newest) = newest else {
            return Ok(0);
        };
        let width = self
            .inner
            .registry
            .resolve(model, &newest.to_string())?
            .manifest
            .input
            .features
            .len();
        Ok(self.capture_source(model)?.labelled(wanted, width)?.len())
    }

    /// The captured examples of `model`, with each device's current group.
    fn capture_source<'a>(&'a self, model: &'a str) -> Result<CaptureSource<'a>> {
        let groups = self
            .inner
            .store
            .devices
            .all()?
            .into_iter()
            .map(|device| (device.id, device.group))
            .collect();
        Ok(CaptureSource {
            telemetry: &self.inner.telemetry,
            model,
            groups,
        })
    }
}

fn executor_name(job: &TrainingJob) -> &'static str {
    match job.request.executor {
        record::ExecutorKind::Local => "local",
        record::ExecutorKind::Kubernetes => "kubernetes",
        record::ExecutorKind::Sagemaker => "sagemaker",
    }
}

/// The number in a job id, for ordering.
fn job_number(id: &str) -> u64 {
    id.trim_start_matches("tj-").parse().unwrap_or(0)
}
