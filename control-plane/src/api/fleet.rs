//! `/api/v1/devices` and `/api/v1/groups`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, AppState, JsonBody, PathParams};
use crate::fleet::{DeviceView, GroupView, MosquittoFiles, NewDevice, RegisteredDevice};

/// Body of `PUT /api/v1/devices/{id}/group`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMove {
    /// The new group.
    pub group: String,
}

/// Registers a device; the answer holds its node config (its only copy of the password).
#[utoipa::path(post, path = "/api/v1/devices", tag = "fleet", request_body = NewDevice,
    responses((status = 201, body = RegisteredDevice), (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn add_device(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewDevice>,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    let registered = state.fleet.add(request)?;
    state.deployer.sync_device(&registered.device.id).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// Lists devices with their online status, reported version and backend.
#[utoipa::path(get, path = "/api/v1/devices", tag = "fleet", responses((status = 200, body = [DeviceView])))]
pub async fn list_devices(
    State(state): State<AppState>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(state.fleet.devices()?))
}

/// Shows one device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "fleet", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = super::ErrorBody)))]
pub async fn get_device(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(state.fleet.device(&id)?))
}

/// Moves a device to another group; it gets that group's current deployment.
#[utoipa::path(put, path = "/api/v1/devices/{id}/group", tag = "fleet", params(("id" = String, Path)), request_body = GroupMove,
    responses((status = 200, body = DeviceView), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn move_device(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<GroupMove>,
) -> Result<Json<DeviceView>, ApiError> {
    state.fleet.move_to(&id, &request.group)?;
    state.deployer.sync_device(&id).await?;
    Ok(Json(state.fleet.device(&id)?))
}

/// Revokes a device: its MQTT password and client certificate are refused from now
/// on, it gets no bundle and no new assignment. The record stays for the audit trail.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "fleet", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = super::ErrorBody)))]
pub async fn revoke_device(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(state.fleet.revoke(&id)?))
}

/// Lists groups with their members.
#[utoipa::path(get, path = "/api/v1/groups", tag = "fleet", responses((status = 200, body = [GroupView])))]
pub async fn list_groups(State(state): State<AppState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    Ok(Json(state.fleet.groups()?))
}

/// Shows one group.
#[utoipa::path(get, path = "/api/v1/groups/{name}", tag = "fleet", params(("name" = String, Path)),
    responses((status = 200, body = GroupView), (status = 404, body = super::ErrorBody)))]
pub async fn get_group(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<GroupView>, ApiError> {
    Ok(Json(state.fleet.group(&name)?))
}

/// Mosquitto password and ACL files for the fleet, for running an external broker.
#[utoipa::path(get, path = "/api/v1/broker/mosquitto", tag = "fleet", responses((status = 200, body = MosquittoFiles)))]
pub async fn mosquitto_files(
    State(state): State<AppState>,
) -> Result<Json<MosquittoFiles>, ApiError> {
    Ok(Json(state.fleet.mosquitto_files(&state.service_hash)?))
}
