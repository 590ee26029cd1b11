//! `/api/v1/telemetry`, `/api/v1/captures` and `/api/v1/alerts`: what the fleet
//! reported, and what is wrong with it.

use axum::Json;
use axum::extract::{Query, State};
use edgewise_core::capture::CaptureRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, AppState};
use crate::monitor::alerts::Alert;
use crate::telemetry_store::{StoredWindow, TelemetryQuery, TelemetrySummary};
use crate::telemetry_views::{Series, SeriesQuery};

/// Which captures to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaptureQuery {
    /// Model name.
    pub model: String,
    /// Only this version.
    pub version: Option<u64>,
}

fn query_error(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        format!("query string: {}", rejection.body_text()),
    )
}

/// Runs a store scan on a blocking thread, so a long one does not stall other requests.
async fn off_the_runtime<T: Send + 'static>(
    scan: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(scan)
        .await
        .map_err(|e| crate::error::Error::Internal(e.to_string()))??)
}

/// Sums windows per device, version or group, with per-feature drift.
#[utoipa::path(get, path = "/api/v1/telemetry", tag = "telemetry", params(TelemetryQuery),
    responses((status = 200, body = TelemetrySummary), (status = 400, body = super::ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    query: Result<Query<TelemetryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TelemetrySummary>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let telemetry = state.telemetry.clone();
    Ok(Json(
        off_the_runtime(move || telemetry.summary(&query)).await?,
    ))
}

/// The windows themselves.
#[utoipa::path(get, path = "/api/v1/telemetry/windows", tag = "telemetry", params(TelemetryQuery),
    responses((status = 200, description = "stored windows"), (status = 400, body = super::ErrorBody)))]
pub async fn windows(
    State(state): State<AppState>,
    query: Result<Query<TelemetryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<StoredWindow>>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(state.telemetry.windows(&query)?))
}

/// Captured examples of a model, with labels where they arrived.
#[utoipa::path(get, path = "/api/v1/captures", tag = "telemetry", params(CaptureQuery),
    responses((status = 200, description = "captured records"), (status = 400, body = super::ErrorBody)))]
pub async fn captures(
    State(state): State<AppState>,
    query: Result<Query<CaptureQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CaptureRecord>>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(state.telemetry.captures(&query.model, query.version)?))
}

/// The matching windows bucketed by arrival time, for charts: traffic, errors,
/// latency, accuracy and per-feature drift per bucket.
#[utoipa::path(get, path = "/api/v1/telemetry/series", tag = "telemetry", params(SeriesQuery),
    responses((status = 200, body = Series), (status = 400, body = super::ErrorBody)))]
pub async fn series(
    State(state): State<AppState>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Series>, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let telemetry = state.telemetry.clone();
    Ok(Json(
        off_the_runtime(move || telemetry.series(&query)).await?,
    ))
}

/// The alerts the control plane holds firing (node offline, drift, halted rollout).
#[utoipa::path(get, path = "/api/v1/alerts", tag = "telemetry",
    responses((status = 200, body = [Alert])))]
pub async fn alerts(State(state): State<AppState>) -> Json<Vec<Alert>> {
    Json(state.monitor.firing())
}
