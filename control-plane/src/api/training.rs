//! `/api/v1/datasets` and `/api/v1/training-jobs`: uploaded training data, training
//! jobs with their logs, and the two calls a remote executor's pod makes (fetch the
//! training file, upload the bundle).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, JsonBody, PathParams};
use crate::error::Error;
use crate::jobs::dataset::DatasetRecord;
use crate::jobs::record::{JobState, NewTrainingJob, TrainingJob};
use crate::retraining::{PolicyRecord, RetrainingPolicy};

/// How an uploaded dataset is named.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file name to keep (e.g. `rainfall-2026.csv.gz`).
    pub name: String,
}

/// Stores a training data file (CSV, or gzip CSV) under its sha256.
#[utoipa::path(post, path = "/api/v1/datasets", tag = "training", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = DatasetRecord), (status = 400, body = super::ErrorBody)))]
pub async fn upload_dataset(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<DatasetRecord>), ApiError> {
    let Query(query) = query.map_err(|r| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("query string: {}", r.body_text()),
        )
    })?;
    let record = state.jobs.datasets().upload(&query.name, &body)?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Lists uploaded datasets.
#[utoipa::path(get, path = "/api/v1/datasets", tag = "training",
    responses((status = 200, body = [DatasetRecord])))]
pub async fn list_datasets(
    State(state): State<AppState>,
) -> Result<Json<Vec<DatasetRecord>>, ApiError> {
    Ok(Json(state.jobs.datasets().list()?))
}

/// Queues a training job.
#[utoipa::path(post, path = "/api/v1/training-jobs", tag = "training", request_body = NewTrainingJob,
    responses((status = 201, body = TrainingJob), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewTrainingJob>,
) -> Result<(StatusCode, Json<TrainingJob>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.jobs.submit(request, "api")?),
    ))
}

/// Lists training jobs, newest first.
#[utoipa::path(get, path = "/api/v1/training-jobs", tag = "training",
    responses((status = 200, body = [TrainingJob])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<TrainingJob>>, ApiError> {
    Ok(Json(state.jobs.list()?))
}

/// Shows a training job.
#[utoipa::path(get, path = "/api/v1/training-jobs/{id}", tag = "training", params(("id" = String, Path)),
    responses((status = 200, body = TrainingJob), (status = 404, body = super::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<TrainingJob>, ApiError> {
    Ok(Json(state.jobs.get(&id)?))
}

/// Cancels a queued or running job.
#[utoipa::path(post, path = "/api/v1/training-jobs/{id}/cancel", tag = "training", params(("id" = String, Path)),
    responses((status = 200, body = TrainingJob), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<TrainingJob>, ApiError> {
    Ok(Json(state.jobs.cancel(&id)?))
}

/// Which log lines to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The first line (0-based); read on from `next` of the previous answer.
    #[serde(default)]
    pub from: u64,
}

/// A slice of a job's log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogSlice {
    /// The lines.
    pub lines: Vec<String>,
    /// The line to ask for next.
    pub next: u64,
    /// Whether the job is over (no more lines will come).
    pub finished: bool,
    /// The job's state.
    pub state: JobState,
}

/// A job's log from line `from` on.
#[utoipa::path(get, path = "/api/v1/training-jobs/{id}/logs", tag = "training",
    params(("id" = String, Path), LogQuery),
    responses((status = 200, body = LogSlice), (status = 404, body = super::ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogSlice>, ApiError> {
    let Query(query) = query.map_err(|r| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("query string: {}", r.body_text()),
        )
    })?;
    let job = state.jobs.get(&id)?;
    let (lines, next) = state.jobs.logs(&id, query.from)?;
    Ok(Json(LogSlice {
        lines,
        next,
        finished: job.finished(),
        state: job.state,
    }))
}

/// The training file of a running job, for a remote executor's pod.
#[utoipa::path(get, path = "/api/v1/training-jobs/{id}/data", tag = "training", params(("id" = String, Path)),
    responses((status = 200, description = "CSV"), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn data(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let job = running(&state, &id)?;
    let path = job
        .data
        .as_ref()
        .map(|_| state.jobs.work_dir().join(&id).join("train.csv"))
        .filter(|path| path.is_file())
        .ok_or_else(|| Error::Conflict(format!("training job {id} has no data prepared yet")))?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| Error::Internal(format!("cannot read the training file: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/csv")], bytes).into_response())
}

/// The trained bundle of a running job, uploaded by a remote executor's pod.
#[utoipa::path(post, path = "/api/v1/training-jobs/{id}/bundle", tag = "training", params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204, description = "stored"), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn upload_bundle(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let job = running(&state, &id)?;
    let version = job
        .version
        .ok_or_else(|| Error::Conflict(format!("training job {id} has no version yet")))?;
    let out = state.jobs.work_dir().join(&id).join("out");
    let path = out.join(format!("{}-v{version}.bundle", job.request.model));
    let staging = out.join(".upload");
    let stored = async {
        tokio::fs::create_dir_all(&out).await?;
        tokio::fs::write(&staging, &body).await?;
        tokio::fs::rename(&staging, &path).await
    };
    stored
        .await
        .map_err(|e| Error::Internal(format!("cannot store the bundle: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

fn running(state: &AppState, id: &str) -> Result<TrainingJob, ApiError> {
    let job = state.jobs.get(id)?;
    if job.state != JobState::Running {
        return Err(Error::Conflict(format!("training job {id} is not running")).into());
    }
    Ok(job)
}

/// Sets a model's retraining policy.
#[utoipa::path(put, path = "/api/v1/models/{name}/retraining-policy", tag = "training",
    params(("name" = String, Path)), request_body = RetrainingPolicy,
    responses((status = 200, body = PolicyRecord), (status = 400, body = super::ErrorBody)))]
pub async fn set_policy(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
    JsonBody(policy): JsonBody<RetrainingPolicy>,
) -> Result<Json<PolicyRecord>, ApiError> {
    Ok(Json(state.retraining.set(&name, policy)?))
}

/// Shows a model's retraining policy and what it last did.
#[utoipa::path(get, path = "/api/v1/models/{name}/retraining-policy", tag = "training",
    params(("name" = String, Path)),
    responses((status = 200, body = PolicyRecord), (status = 404, body = super::ErrorBody)))]
pub async fn get_policy(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<PolicyRecord>, ApiError> {
    Ok(Json(state.retraining.get(&name)?))
}

/// Removes a model's retraining policy.
#[utoipa::path(delete, path = "/api/v1/models/{name}/retraining-policy", tag = "training",
    params(("name" = String, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = super::ErrorBody)))]
pub async fn delete_policy(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.retraining.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts the canary rollout of a retrained version that waits for approval.
#[utoipa::path(post, path = "/api/v1/training-jobs/{id}/approve", tag = "training",
    params(("id" = String, Path)),
    responses((status = 200, body = TrainingJob), (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<TrainingJob>, ApiError> {
    Ok(Json(state.retraining.approve(&id)?))
}
