//! `edgewise dataset …` and `edgewise train …`: upload training data, submit training
//! jobs, follow their logs, cancel them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::client::ApiClient;
use super::render::{self, or_dash, table};
use crate::api::training::LogSlice;
use crate::jobs::dataset::DatasetRecord;
use crate::jobs::record::TrainingJob;

/// `edgewise dataset …`.
#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Upload a CSV (or CSV.gz) file for training jobs.
    Upload {
        /// The file.
        file: PathBuf,
    },
    /// List uploaded datasets.
    List,
}

/// `edgewise train submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// The model.
    #[arg(long)]
    pub model: String,
    /// A preset (digits-mlp, rainfall-mlp, …) or a JSON spec file (default: the
    /// parent version's spec).
    #[arg(long)]
    pub spec: Option<String>,
    /// A local data file to upload and train on.
    #[arg(long, conflicts_with = "dataset")]
    pub data: Option<PathBuf>,
    /// An uploaded dataset's id.
    #[arg(long)]
    pub dataset: Option<String>,
    /// The data file's label column (default: its last column).
    #[arg(long)]
    pub label: Option<String>,
    /// Also train on the fleet's captured, labelled examples of the model.
    #[arg(long)]
    pub captured: bool,
    /// Only captures from these groups (repeat).
    #[arg(long = "group", requires = "captured")]
    pub groups: Vec<String>,
    /// Only captures this recent (e.g. 6h).
    #[arg(long, requires = "captured", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Maximum epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where it runs: local, kubernetes or sagemaker.
    #[arg(long, default_value = "local")]
    pub executor: String,
    /// Train only; do not register the result.
    #[arg(long)]
    pub no_register: bool,
    /// Follow the job's log until it ends.
    #[arg(long)]
    pub follow: bool,
}

/// `edgewise train …`.
#[derive(Subcommand)]
pub enum TrainCommand {
    /// Queue a training job for a model.
    Submit(Box<SubmitArgs>),
    /// List training jobs.
    List,
    /// Show a job.
    Show {
        /// Job id.
        id: String,
    },
    /// Print a job's log.
    Logs {
        /// Job id.
        id: String,
        /// Keep printing until the job ends.
        #[arg(long)]
        follow: bool,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Roll out a retrained version that waits for approval.
    Approve {
        /// Job id.
        id: String,
    },
}

/// `edgewise retraining …`: a model's retraining policy.
#[derive(Subcommand)]
pub enum RetrainingCommand {
    /// Set a model's policy.
    Set {
        /// The model.
        model: String,
        /// Do not retrain on confirmed input drift.
        #[arg(long)]
        no_drift: bool,
        /// Retrain when a group's accuracy falls below this.
        #[arg(long)]
        accuracy_below: Option<f64>,
        /// Only these groups (repeat; all when absent).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Fewest labelled captures to train on.
        #[arg(long, default_value_t = 500)]
        min_labelled: usize,
        /// Share of the newest captures held out for the comparison.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// How much higher the candidate's held-out accuracy must be.
        #[arg(long, default_value_t = 0.02)]
        margin: f64,
        /// An uploaded dataset to train on beside the captures.
        #[arg(long)]
        reference_dataset: Option<String>,
        /// Maximum epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Time between two retrainings.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        cooldown: Duration,
        /// Wait for `edgewise train approve` before rolling out.
        #[arg(long)]
        approval: bool,
        /// Rollout stages, cumulative percentages.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
        stages: Vec<u32>,
        /// How long each stage bakes.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        bake: Duration,
    },
    /// Show a model's policy and what it last did.
    Show {
        /// The model.
        model: String,
    },
    /// Remove a model's policy.
    Delete {
        /// The model.
        model: String,
    },
}

/// Runs a retraining-policy command.
pub async fn retraining(api: &ApiClient, command: RetrainingCommand) -> Result<()> {
    let path = |model: &str| format!("/api/v1/models/{model}/retraining-policy");
    let record: serde_json::Value = match command {
        RetrainingCommand::Set {
            model,
            no_drift,
            accuracy_below,
            groups,
            min_labelled,
            holdout,
            margin,
            reference_dataset,
            epochs,
            cooldown,
            approval,
            stages,
            bake,
        } => {
            let policy = json!({
                "on_drift": !no_drift,
                "accuracy_below": accuracy_below,
                "groups": groups,
                "min_labelled": min_labelled,
                "holdout_fraction": holdout,
                "margin": margin,
                "reference_dataset": reference_dataset,
                "hyperparameters": { "epochs": epochs },
                "cooldown_seconds": cooldown.as_secs(),
                "rollout": { "approval": approval, "stages": stages, "bake_seconds": bake.as_secs() },
            });
            api.send_json(Method::PUT, &path(&model), &policy).await?
        }
        RetrainingCommand::Show { model } => api.get(&path(&model)).await?,
        RetrainingCommand::Delete { model } => {
            api.delete(&path(&model)).await?;
            println!("removed the retraining policy of {model}");
            return Ok(());
        }
    };
    render::json(&record);
    Ok(())
}

/// Runs a dataset command.
pub async fn dataset(api: &ApiClient, json: bool, command: DatasetCommand) -> Result<()> {
    match command {
        DatasetCommand::Upload { file } => {
            let record = upload(api, &file).await?;
            if json {
                render::json(&record);
            } else {
                println!("uploaded {} as dataset {}", record.name, record.id);
            }
        }
        DatasetCommand::List => {
            let all: Vec<DatasetRecord> = api.get("/api/v1/datasets").await?;
            if json {
                render::json(&all);
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.name.clone(),
                            d.size.to_string(),
                            d.uploaded_at.clone(),
                        ]
                    })
                    .collect();
                table(&["id", "name", "bytes", "uploaded"], &rows);
            }
        }
    }
    Ok(())
}

async fn upload(api: &ApiClient, file: &std::path::Path) -> Result<DatasetRecord> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data.csv".to_owned());
    api.post_body(
        &format!("/api/v1/datasets?name={name}"),
        reqwest::Body::from(bytes),
    )
    .await
}

/// Runs a training command.
pub async fn run(api: &ApiClient, json: bool, command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::Submit(args) => {
            let SubmitArgs {
                model,
                spec,
                data,
                dataset,
                label,
                captured,
                groups,
                since,
                epochs,
                lr,
                seed,
                executor,
                no_register,
                follow,
            } = *args;
            let uploaded = match (data, dataset) {
                (Some(file), _) => Some(upload(api, &file).await?.id),
                (None, id) => id,
            };
            if uploaded.is_none() && !captured {
                bail!("give --data FILE, --dataset ID, --captured, or a file and --captured");
            }
            let spec = match spec {
                Some(text) if std::path::Path::new(&text).is_file() => {
                    let raw = std::fs::read_to_string(&text)?;
                    Some(
                        serde_json::from_str::<serde_json::Value>(&raw)
                            .with_context(|| format!("{text} is not a JSON spec"))?,
                    )
                }
                Some(preset) => Some(json!(preset)),
                None => None,
            };
            let request = json!({
                "model": model,
                "spec": spec,
                "dataset": {
                    "uploaded": uploaded,
                    "label": label,
                    "captured": captured.then(|| json!({
                        "groups": groups,
                        "since_seconds": since.map(|d| d.as_secs()),
                    })),
                },
                "hyperparameters": { "epochs": epochs, "learning_rate": lr, "seed": seed },
                "executor": executor,
                "register": !no_register,
            });
            let job: TrainingJob = api
                .send_json(Method::POST, "/api/v1/training-jobs", &request)
                .await?;
            if !follow {
                if json {
                    render::json(&job);
                } else {
                    println!("queued training job {} for {}", job.id, job.request.model);
                }
                return Ok(());
            }
            follow_logs(api, &job.id).await?;
            let job: TrainingJob = api
                .get(&format!("/api/v1/training-jobs/{}", job.id))
                .await?;
            print_job(json, &job);
            if !job.registered && job.error.is_some() {
                bail!("training job {} failed", job.id);
            }
        }
        TrainCommand::List => {
            let jobs: Vec<TrainingJob> = api.get("/api/v1/training-jobs").await?;
            if json {
                render::json(&jobs);
            } else {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.clone(),
                            j.request.model.clone(),
                            format!("{:?}", j.state).to_lowercase(),
                            or_dash(j.version),
                            if j.registered { "yes" } else { "no" }.to_owned(),
                            j.origin.clone(),
                            j.created_at.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "model",
                        "state",
                        "version",
                        "registered",
                        "origin",
                        "created",
                    ],
                    &rows,
                );
            }
        }
        TrainCommand::Show { id } => {
            let job: TrainingJob = api.get(&format!("/api/v1/training-jobs/{id}")).await?;
            print_job(json, &job);
        }
        TrainCommand::Logs { id, follow } => {
            if follow {
                follow_logs(api, &id).await?;
            } else {
                let slice: LogSlice = api.get(&format!("/api/v1/training-jobs/{id}/logs")).await?;
                for line in slice.lines {
                    println!("{line}");
                }
            }
        }
        TrainCommand::Approve { id } => {
            let job: TrainingJob = api
                .send_json(
                    Method::POST,
                    &format!("/api/v1/training-jobs/{id}/approve"),
                    &json!({}),
                )
                .await?;
            println!(
                "rolling out {} version {}: {}",
                job.request.model,
                or_dash(job.version),
                job.rollouts.join(", ")
            );
        }
        TrainCommand::Cancel { id } => {
            let job: TrainingJob = api
                .send_json(
                    Method::POST,
                    &format!("/api/v1/training-jobs/{id}/cancel"),
                    &json!({}),
                )
                .await?;
            println!("cancelling training job {}", job.id);
        }
    }
    Ok(())
}

/// Prints a job's log as it grows, until the job ends.
async fn follow_logs(api: &ApiClient, id: &str) -> Result<()> {
    let mut from = 0;
    loop {
        let slice: LogSlice = api
            .get(&format!("/api/v1/training-jobs/{id}/logs?from={from}"))
            .await?;
        for line in &slice.lines {
            println!("{line}");
        }
        from = slice.next;
        if slice.finished && slice.lines.is_empty() {
            return Ok(());
        }
        if slice.lines.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn print_job(json: bool, job: &TrainingJob) {
    if json {
        render::json(job);
        return;
    }
    println!("job         {} ({})", job.id, job.origin);
    println!(
        "model       {} version {} (from {})",
        job.request.model,
        or_dash(job.version),
        or_dash(job.parent_version)
    );
    println!("state       {:?}", job.state);
    if let Some(data) = &job.data {
        println!(
            "data        {} rows ({} captured), {} held out; sha256 {}",
            data.rows, data.captured_rows, data.holdout_rows, data.sha256
        );
    }
    if let Some(metrics) = &job.metrics {
        println!("metrics     {metrics}");
    }
    if let Some(e) = &job.evaluation {
        println!(
            "evaluation  candidate {:.4} vs version {} {:.4} on {} held-out rows: {}",
            e.candidate_accuracy,
            e.parent_version,
            e.parent_accuracy,
            e.examples,
            if e.better { "better" } else { "not better" }
        );
    }
    println!("registered  {}", if job.registered { "yes" } else { "no" });
    if !job.rollouts.is_empty() {
        println!("rollouts    {}", job.rollouts.join(", "));
    }
    if let Some(error) = &job.error {
        println!("error       {error}");
    }
}
