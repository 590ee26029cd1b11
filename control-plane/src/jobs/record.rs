//! What a training job is asked to do, and what became of it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dataset::{DatasetChoice, PreparedData};

/// Where a job runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// `edgewise-train` as a child process of the control plane.
    #[default]
    Local,
    /// A Kubernetes Job (rendered, and applied with kubectl when configured).
    Kubernetes,
    /// An Amazon SageMaker training job.
    Sagemaker,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the executor.
    Queued,
    /// Training.
    Running,
    /// Trained (and registered, when asked and good enough).
    Succeeded,
    /// Training or registration failed; see `error`.
    Failed,
    /// Cancelled by a person.
    Cancelled,
}

/// Training settings; the trainer's defaults where absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HyperParameters {
    /// Maximum epochs.
    pub epochs: Option<usize>,
    /// Mini-batch size.
    pub batch_size: Option<usize>,
    /// Adam learning rate.
    pub learning_rate: Option<f64>,
    /// Seed.
    pub seed: Option<u64>,
    /// Epochs without improvement before stopping.
    pub patience: Option<usize>,
}

/// Compare the result with a serving version before registering it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationPlan {
    /// Share of the newest captured rows held out for the comparison.
    pub holdout_fraction: f64,
    /// How much higher the candidate's accuracy must be.
    pub margin: f64,
}

/// A request to train a new version of a model.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrainingJob {
    /// The model.
    pub model: String,
    /// The network: a preset name or a JSON spec (default: the parent version's).
    pub spec: Option<serde_json::Value>,
    /// What to train on.
    pub dataset: DatasetChoice,
    /// Training settings.
    #[serde(default)]
    pub hyperparameters: HyperParameters,
    /// Where it runs.
    #[serde(default)]
    pub executor: ExecutorKind,
    /// Register the trained version (default true).
    #[serde(default = "yes")]
    pub register: bool,
    /// The version it is retrained from (default: the newest registered).
    pub parent_version: Option<u64>,
    /// Compare with the parent on held-out recent data; register only if better.
    pub evaluation: Option<EvaluationPlan>,
}

fn yes() -> bool {
    true
}

/// The comparison of candidate and parent on held-out data.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvaluationResult {
    /// Held-out rows.
    pub examples: usize,
    /// The candidate's accuracy on them.
    pub candidate_accuracy: f64,
    /// The parent's accuracy on them.
    pub parent_accuracy: f64,
    /// The parent version.
    pub parent_version: u64,
    /// Whether the candidate won by the margin.
    pub better: bool,
}

/// A training job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrainingJob {
    /// Job id.
    pub id: String,
    /// Who asked: `api` or `retraining-policy`.
    pub origin: String,
    /// The request.
    pub request: NewTrainingJob,
    /// Where it is.
    pub state: JobState,
    /// The version it produces (set when it starts).
    pub version: Option<u64>,
    /// The version it was retrained from.
    pub parent_version: Option<u64>,
    /// The data it trained on.
    pub data: Option<PreparedData>,
    /// When it was submitted, started and finished (RFC 3339).
    pub created_at: String,
    /// When it started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// sha256 of the trained bundle.
    pub bundle_sha256: Option<String>,
    /// The trained version's test metrics.
    #[schema(value_type = Object)]
    pub metrics: Option<serde_json::Value>,
    /// The comparison with the parent, when asked.
    pub evaluation: Option<EvaluationResult>,
    /// Whether the version was registered.
    pub registered: bool,
    /// Rollouts started for it by a retraining policy.
    #[serde(default)]
    pub rollouts: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl TrainingJob {
    /// Whether the job is over.
    pub fn finished(&self) -> bool {
        matches!(
            self.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}
