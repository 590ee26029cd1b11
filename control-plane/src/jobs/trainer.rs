//! One job's run: prepare the data and spec, hand the `edgewise-train` command to the
//! executor, read the bundle back, compare it with its parent when asked, register it.

use std::path::{Path, PathBuf};

use edgewise_core::bundle::{Bundle, sha256_hex};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::dataset::LABEL_COLUMN;
use super::record::{EvaluationResult, ExecutorKind, TrainingJob};

/// What `edgewise-train evaluate` prints.
#[derive(Deserialize)]
struct Score {
    examples: usize,
    accuracy: f64,
}

/// The files a job's command refers to.
pub struct JobFiles {
    /// The training CSV.
    pub data: PathBuf,
    /// The spec: a preset name or a JSON file path.
    pub spec: String,
    /// Where the bundle is written.
    pub out: PathBuf,
}

/// The `edgewise-train train` arguments for `job` (without the program), with
/// `files` as the paths the executor's environment sees.
pub fn train_args(
    job: &TrainingJob,
    version: u64,
    features: &[String],
    files: &JobFiles,
    signing_key: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "train".into(),
        "--data".into(),
        files.data.display().to_string(),
        "--label".into(),
        LABEL_COLUMN.into(),
        "--features".into(),
        features.join(","),
        "--spec".into(),
        files.spec.clone(),
        "--name".into(),
        job.request.model.clone(),
        "--version".into(),
        version.to_string(),
        "--out".into(),
        files.out.display().to_string(),
        "--signing-key".into(),
        signing_key.display().to_string(),
        "--training-job".into(),
        job.id.clone(),
    ];
    if let Some(parent) = job.parent_version {
        args.extend(["--parent-version".into(), parent.to_string()]);
    }
    let h = &job.request.hyperparameters;
    for (flag, value) in [
        ("--epochs", h.epochs.map(|v| v.to_string())),
        ("--batch-size", h.batch_size.map(|v| v.to_string())),
        ("--lr", h.learning_rate.map(|v| v.to_string())),
        ("--seed", h.seed.map(|v| v.to_string())),
        ("--patience", h.patience.map(|v| v.to_string())),
    ] {
        if let Some(value) = value {
            args.extend([flag.to_owned(), value]);
        }
    }
    args
}

/// Runs `job`; `Err` says why it failed.
pub async fn execute(
    jobs: &Jobs,
    job: &mut TrainingJob,
    cancel: CancellationToken,
) -> Result<(), String> {
    let inner = &jobs.inner;
    let folder = inner.settings.work_dir.join(&job.id);
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let parent = match job.parent_version {
        Some(version) => Some(
            inner
                .registry
                .resolve(&job.request.model, &version.to_string())
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let version = inner
        .registry
        .versions(&job.request.model)
        .map_or(0, |versions| {
            versions.iter().map(|v| v.version).max().unwrap_or(0)
        })
        + 1;
    job.version = Some(version);
    let features = match &parent {
        Some(parent) => parent.manifest.input.features.clone(),
        None => uploaded_features(jobs, job)?,
    };
    let spec = match (&job.request.spec, &parent) {
        (Some(serde_json::Value::String(preset)), _) => preset.clone(),
        (Some(spec), _) => write_json(&folder.join("spec.json"), spec)?,
        (None, Some(parent)) => write_json(
            &folder.join("spec.json"),
            &serde_json::to_value(&parent.manifest.spec).map_err(|e| e.to_string())?,
        )?,
        (None, None) => return Err("no spec and no parent version to take one from".to_owned()),
    };
    let holdout_fraction = job
        .request
        .evaluation
        .as_ref()
        .map(|plan| plan.holdout_fraction);
    let prepared = {
        let source = jobs
            .capture_source(&job.request.model)
            .map_err(|e| e.to_string())?;
        inner
            .datasets
            .prepare(
                &job.request.dataset,
                &source,
                &features,
                holdout_fraction,
                &folder,
            )
            .map_err(|e| e.to_string())?
    };
    jobs.log(
        &job.id,
        format!(
            "data: {} rows ({} captured on the fleet), {} held out; sha256 {}",
            prepared.rows, prepared.captured_rows, prepared.holdout_rows, prepared.sha256
        ),
    );
    job.data = Some(prepared.clone());
    jobs.put(job).map_err(|e| e.to_string())?;

    let files = JobFiles {
        data: prepared.train.clone(),
        spec,
        out: folder.join("out"),
    };
    let bundle_path = files
        .out
        .join(format!("{}-v{version}.bundle", job.request.model));
    let args = train_args(job, version, &features, &files, &inner.settings.signing_key);
    match job.request.executor {
        ExecutorKind::Local => {
            let (logger, id) = (jobs.clone(), job.id.clone());
            super::local::run(
                &inner.settings.trainer,
                &args,
                move |line| logger.log(&id, line),
                cancel,
            )
            .await?;
        }
        ExecutorKind::Kubernetes => {
            super::kubernetes::run(jobs, job, &args, &folder, &bundle_path, cancel).await?;
        }
        ExecutorKind::Sagemaker => {
            super::sagemaker::run(jobs, job, &args, &prepared.train, &bundle_path, cancel).await?;
        }
    }
    let bytes = std::fs::read(&bundle_path).map_err(|e| {
        format!(
            "the trainer wrote no bundle at {}: {e}",
            bundle_path.display()
        )
    })?;
    let bundle =
        Bundle::open(&bytes).map_err(|e| format!("the trained bundle is unreadable: {e}"))?;
    job.bundle_sha256 = Some(sha256_hex(&bytes));
    job.metrics = serde_json::to_value(&bundle.manifest.lineage.metrics)
        .ok()
        .map(|mut metrics| {
            if let Some(object) = metrics.as_object_mut() {
                object.remove("confusion_matrix");
                object.remove("epoch_losses");
            }
            metrics
        });
    jobs.log(
        &job.id,
        format!(
            "trained {} version {version}: test accuracy {:.4}",
            job.request.model, bundle.manifest.lineage.metrics.test_accuracy
        ),
    );

    if let (Some(plan), Some(parent), Some(holdout)) =
        (&job.request.evaluation, &parent, &prepared.holdout)
    {
        let parent_bundle = inner
            .registry
            .artifacts()
            .local_copy(&parent.bundle_sha256)
            .await?;
        let candidate = evaluate(&inner.settings.trainer, &bundle_path, holdout).await?;
        let baseline = evaluate(&inner.settings.trainer, &parent_bundle, holdout).await?;
        let better = candidate.accuracy >= baseline.accuracy + plan.margin;
        jobs.log(
            &job.id,
            format!(
                "evaluation on {} held-out recent rows: candidate {:.4}, version {} {:.4} → {}",
                candidate.examples,
                candidate.accuracy,
                parent.version,
                baseline.accuracy,
                if better {
                    "better"
                } else {
                    "not better by the margin; not registered"
                }
            ),
        );
        job.evaluation = Some(EvaluationResult {
            examples: candidate.examples,
            candidate_accuracy: candidate.accuracy,
            parent_accuracy: baseline.accuracy,
            parent_version: parent.version,
            better,
        });
        if !better {
            return Ok(());
        }
    }
    if job.request.register {
        inner
            .registry
            .push(&job.request.model, bytes)
            .await
            .map_err(|e| format!("registration refused: {e}"))?;
        job.registered = true;
        jobs.log(
            &job.id,
            format!("registered {} version {version}", job.request.model),
        );
    }
    Ok(())
}

/// Feature names of a new model: the uploaded file's columns but the label.
fn uploaded_features(jobs: &Jobs, job: &TrainingJob) -> Result<Vec<String>, String> {
    let id = job
        .request
        .dataset
        .uploaded
        .as_deref()
        .ok_or("a new model needs an uploaded dataset")?;
    let header = jobs.inner.datasets.header(id).map_err(|e| e.to_string())?;
    let label = job
        .request
        .dataset
        .label
        .clone()
        .or_else(|| header.last().cloned())
        .unwrap_or_default();
    Ok(header
        .into_iter()
        .filter(|column| *column != label)
        .collect())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<String, String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// Scores a bundle on a labelled file with `edgewise-train evaluate`.
async fn evaluate(trainer: &Path, bundle: &Path, data: &Path) -> Result<Score, String> {
    let output = tokio::process::Command::new(trainer)
        .arg("evaluate")
        .arg(bundle)
        .arg("--data")
        .arg(data)
        .args(["--label", LABEL_COLUMN])
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", trainer.display()))?;
    if !output.status.success() {
        return Err(format!(
            "evaluating {} failed: {}",
            bundle.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("unexpected evaluation output: {e}"))
}
