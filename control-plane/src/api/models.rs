//! `/api/v1/models`: pushing, listing and deleting versions, and aliases.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, AppState, JsonBody, PathParams};
use crate::error::Error;
use crate::registry::{ModelSummary, VersionView};

/// Body of `PUT /api/v1/models/{name}/aliases/{alias}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    /// The version the alias points at.
    pub version: u64,
}

/// Registers a signed bundle (the raw file as the body).
#[utoipa::path(post, path = "/api/v1/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "model name; must match the manifest")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the bundle file"),
    responses((status = 201, body = VersionView), (status = 400, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "version exists"),
        (status = 422, body = super::ErrorBody, description = "signature not trusted")))]
pub async fn push(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<VersionView>), ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!("bundle upload: {}", rejection.body_text()),
        )
    })?;
    if body.is_empty() {
        return Err(Error::Invalid("request body is empty; send the bundle file".into()).into());
    }
    let record = state.registry.push(&name, body).await?;
    let view = state
        .registry
        .version_view(&record.model, &record.version.to_string())?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Lists models with their versions and aliases.
#[utoipa::path(get, path = "/api/v1/models", tag = "models", responses((status = 200, body = [ModelSummary])))]
pub async fn list_models(
    State(state): State<AppState>,
) -> Result<Json<Vec<ModelSummary>>, ApiError> {
    Ok(Json(state.registry.models()?))
}

/// Lists a model's versions with metrics, lineage and profile summary.
#[utoipa::path(get, path = "/api/v1/models/{name}/versions", tag = "models",
    params(("name" = String, Path)), responses((status = 200, body = [VersionView]), (status = 404, body = super::ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    Ok(Json(state.registry.versions(&name)?))
}

/// Shows one version, by number or alias.
#[utoipa::path(get, path = "/api/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path), ("version" = String, Path, description = "number or alias")),
    responses((status = 200, body = VersionView), (status = 404, body = super::ErrorBody)))]
pub async fn get_version(
    State(state): State<AppState>,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    Ok(Json(state.registry.version_view(&name, &version)?))
}

/// Deletes a version; refused while any device is assigned it.
#[utoipa::path(delete, path = "/api/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path), ("version" = u64, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn delete_version(
    State(state): State<AppState>,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let version = state.registry.resolve(&name, &version)?.version;
    state.registry.delete(&name, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a model's aliases.
#[utoipa::path(get, path = "/api/v1/models/{name}/aliases", tag = "models",
    params(("name" = String, Path)), responses((status = 200, body = BTreeMap<String, u64>)))]
pub async fn list_aliases(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<BTreeMap<String, u64>>, ApiError> {
    Ok(Json(state.registry.aliases(&name)?))
}

/// Sets or moves an alias.
#[utoipa::path(put, path = "/api/v1/models/{name}/aliases/{alias}", tag = "models",
    params(("name" = String, Path), ("alias" = String, Path)), request_body = AliasTarget,
    responses((status = 200, body = BTreeMap<String, u64>), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn set_alias(
    State(state): State<AppState>,
    PathParams((name, alias)): PathParams<(String, String)>,
    JsonBody(target): JsonBody<AliasTarget>,
) -> Result<Json<BTreeMap<String, u64>>, ApiError> {
    state.registry.set_alias(&name, &alias, target.version)?;
    Ok(Json(state.registry.aliases(&name)?))
}

/// Deletes an alias.
#[utoipa::path(delete, path = "/api/v1/models/{name}/aliases/{alias}", tag = "models",
    params(("name" = String, Path), ("alias" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete_alias(
    State(state): State<AppState>,
    PathParams((name, alias)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete_alias(&name, &alias)?;
    Ok(StatusCode::NO_CONTENT)
}
