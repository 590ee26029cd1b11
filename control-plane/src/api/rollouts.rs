//! `/api/v1/rollouts`: staged rollouts and their commands.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{ApiError, AppState, JsonBody, PathParams};
use crate::rollout::{NewRollout, RolloutRecord};

/// Starts a staged rollout.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts", request_body = NewRollout,
    responses((status = 201, body = RolloutRecord), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewRollout>,
) -> Result<(StatusCode, Json<RolloutRecord>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.rollouts.start(&request)?)))
}

/// Lists rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts", responses((status = 200, body = [RolloutRecord])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<RolloutRecord>>, ApiError> {
    Ok(Json(state.rollouts.list()?))
}

/// Shows a rollout: its stages with each gate's numbers and verdict, and its audit trail.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "rollouts", params(("id" = String, Path)),
    responses((status = 200, body = RolloutRecord), (status = 404, body = super::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<RolloutRecord>, ApiError> {
    Ok(Json(state.rollouts.get(&id)?))
}

/// `pause`, `resume`, `promote` (pass the current stage now) or `abort` (roll back).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/{command}", tag = "rollouts",
    params(("id" = String, Path), ("command" = String, Path, description = "pause, resume, promote or abort")),
    responses((status = 200, body = RolloutRecord), (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn command(
    State(state): State<AppState>,
    PathParams((id, command)): PathParams<(String, String)>,
) -> Result<Json<RolloutRecord>, ApiError> {
    Ok(Json(state.rollouts.command(&id, &command).await?))
}
