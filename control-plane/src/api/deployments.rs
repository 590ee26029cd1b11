//! `/api/v1/deployments`: deploying a version to a whole group, and its progress.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{ApiError, AppState, JsonBody, PathParams};
use crate::deploy::{DeploymentStatus, NewDeployment};
use crate::store::DeploymentRecord;

/// Deploys a version to every device of a group at once.
#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", request_body = NewDeployment,
    responses((status = 201, body = DeploymentStatus), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn deploy(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewDeployment>,
) -> Result<(StatusCode, Json<DeploymentStatus>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.deployer.deploy(&request).await?),
    ))
}

/// Lists deployments, newest first.
#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", responses((status = 200, body = [DeploymentRecord])))]
pub async fn list_deployments(
    State(state): State<AppState>,
) -> Result<Json<Vec<DeploymentRecord>>, ApiError> {
    Ok(Json(state.deployer.list()?))
}

/// Shows a deployment with each device's state, taken from what it reports.
#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, body = DeploymentStatus), (status = 404, body = super::ErrorBody)))]
pub async fn get_deployment(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    Ok(Json(state.deployer.status(&id)?))
}
