//! Key sets and their rotations: read them, rotate the deployment key, publish a
//! release key rotation signed elsewhere (admin).

use axum::Json;
use axum::extract::State;
use edgewise_core::rotation::SignedKeyRotation;

use super::{ApiError, AppState, JsonBody};
use crate::keyring::KeysView;

/// Both key sets, their versions, and the rotation chain nodes receive.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, body = KeysView), (status = 401, body = super::ErrorBody)))]
pub async fn show(State(state): State<AppState>) -> Json<KeysView> {
    Json(state.keyring.view())
}

/// Replaces the deployment key: the rotation is signed by the old and the new key, and
/// every assignment from now on is signed by the new key and carries the rotation.
#[utoipa::path(post, path = "/api/v1/keys/deployment/rotate", tag = "keys",
    responses((status = 200, body = KeysView), (status = 403, body = super::ErrorBody)))]
pub async fn rotate_deployment(State(state): State<AppState>) -> Result<Json<KeysView>, ApiError> {
    let keyring = state.keyring.clone();
    let view = tokio::task::spawn_blocking(move || keyring.rotate_deployment())
        .await
        .map_err(|e| crate::error::Error::Internal(e.to_string()))??;
    Ok(Json(view))
}

/// Publishes a release key rotation, signed by enough current and new release keys.
#[utoipa::path(post, path = "/api/v1/keys/release/rotations", tag = "keys",
    request_body(content = Object, description = "A signed key rotation document (`edgewise keys rotate-release --out`)"),
    responses((status = 200, body = KeysView), (status = 400, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub async fn publish_release_rotation(
    State(state): State<AppState>,
    JsonBody(signed): JsonBody<SignedKeyRotation>,
) -> Result<Json<KeysView>, ApiError> {
    Ok(Json(state.keyring.add_release_rotation(signed)?))
}
