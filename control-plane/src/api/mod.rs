//! The REST API under `/api/v1`, its OpenAPI document, and `/metrics`. Every error is
//! a JSON body `{"error": "..."}` that names the problem, with a 4xx status for the
//! caller's mistakes.

mod artifacts;
pub mod auth;
#[cfg(test)]
mod body_props;
mod deployments;
mod fleet;
mod keys;
mod models;
mod rollouts;
mod telemetry;
pub mod training;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::OpenApi;

use crate::deploy::Deployer;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::registry::Registry;
use crate::transfer::ArtifactSource;

/// Largest JSON body accepted, in bytes.
const MAX_JSON_BYTES: usize = 1024 * 1024;

/// What the handlers share. Every request clones it, and every route's middleware
/// holds a copy, so it is one pointer to [`Services`].
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services` with the handlers.
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The control plane's parts that the handlers use.
pub struct Services {
    /// The model registry.
    pub registry: Registry,
    /// The fleet.
    pub fleet: Fleet,
    /// Deployments.
    pub deployer: Deployer,
    /// Bundle files for the HTTP fallback.
    pub artifacts: ArtifactSource,
    /// The Prometheus recorder.
    pub metrics: PrometheusHandle,
    /// The service user's password hash, for generated Mosquitto files.
    pub service_hash: String,
    /// Telemetry windows and captures.
    pub telemetry: crate::telemetry_store::TelemetryStore,
    /// Staged rollouts.
    pub rollouts: crate::rollout::Rollouts,
    /// The fleet monitor and its alerts.
    pub monitor: crate::monitor::Monitor,
    /// Training jobs and datasets.
    pub jobs: crate::jobs::Jobs,
    /// Retraining policies.
    pub retraining: crate::retraining::Retraining,
    /// API tokens and the audit log.
    pub tokens: crate::auth::Tokens,
    /// Signing keys and their rotations.
    pub keyring: crate::keyring::Keyring,
}

/// The whole HTTP surface; bundle uploads may be up to `max_bundle_bytes`.
pub fn router(state: AppState, max_bundle_bytes: usize) -> Router {
    let uploads = Router::new()
        .route(
            "/api/v1/models/{name}/versions",
            get(models::list_versions).post(models::push),
        )
        .route(
            "/api/v1/datasets",
            get(training::list_datasets).post(training::upload_dataset),
        )
        .route(
            "/api/v1/training-jobs/{id}/bundle",
            axum::routing::post(training::upload_bundle),
        )
        .layer(DefaultBodyLimit::max(max_bundle_bytes));
    Router::new()
        .merge(uploads)
        .route("/api/v1/models", get(models::list_models))
        .route(
            "/api/v1/models/{name}/versions/{version}",
            get(models::get_version).delete(models::delete_version),
        )
        .route("/api/v1/models/{name}/aliases", get(models::list_aliases))
        .route(
            "/api/v1/models/{name}/aliases/{alias}",
            axum::routing::put(models::set_alias).delete(models::delete_alias),
        )
        .route(
            "/api/v1/devices",
            get(fleet::list_devices).post(fleet::add_device),
        )
        .route("/api/v1/devices/{id}", get(fleet::get_device))
        .route(
            "/api/v1/devices/{id}/revoke",
            axum::routing::post(fleet::revoke_device),
        )
        .route(
            "/api/v1/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route(
            "/api/v1/tokens/{name}",
            axum::routing::delete(auth::revoke_token),
        )
        .route("/api/v1/whoami", get(auth::whoami))
        .route("/api/v1/keys", get(keys::show))
        .route(
            "/api/v1/keys/deployment/rotate",
            axum::routing::post(keys::rotate_deployment),
        )
        .route(
            "/api/v1/keys/release/rotations",
            axum::routing::post(keys::publish_release_rotation),
        )
        .route("/api/v1/audit", get(auth::audit))
        .route(
            "/api/v1/devices/{id}/group",
            axum::routing::put(fleet::move_device),
        )
        .route("/api/v1/groups", get(fleet::list_groups))
        .route("/api/v1/groups/{name}", get(fleet::get_group))
        .route("/api/v1/broker/mosquitto", get(fleet::mosquitto_files))
        .route(
            "/api/v1/deployments",
            get(deployments::list_deployments).post(deployments::deploy),
        )
        .route("/api/v1/deployments/{id}", get(deployments::get_deployment))
        .route("/api/v1/artifacts/{sha256}", get(artifacts::download))
        .route(
            "/api/v1/rollouts",
            get(rollouts::list).post(rollouts::start),
        )
        .route("/api/v1/rollouts/{id}", get(rollouts::get))
        .route(
            "/api/v1/rollouts/{id}/{command}",
            axum::routing::post(rollouts::command),
        )
        .route("/api/v1/telemetry", get(telemetry::summary))
        .route("/api/v1/telemetry/windows", get(telemetry::windows))
        .route("/api/v1/telemetry/series", get(telemetry::series))
        .route("/api/v1/alerts", get(telemetry::alerts))
        .route(
            "/api/v1/training-jobs",
            get(training::list).post(training::submit),
        )
        .route("/api/v1/training-jobs/{id}", get(training::get))
        .route(
            "/api/v1/training-jobs/{id}/cancel",
            axum::routing::post(training::cancel),
        )
        .route("/api/v1/training-jobs/{id}/logs", get(training::logs))
        .route("/api/v1/training-jobs/{id}/data", get(training::data))
        .route(
            "/api/v1/training-jobs/{id}/approve",
            axum::routing::post(training::approve),
        )
        .route(
            "/api/v1/models/{name}/retraining-policy",
            get(training::get_policy)
                .put(training::set_policy)
                .delete(training::delete_policy),
        )
        .route("/api/v1/captures", get(telemetry::captures))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route(
            "/api/v1/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/metrics", get(render_metrics))
        .merge(crate::dashboard::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn(record_latency))
        .with_state(state)
}

/// The OpenAPI document of the REST API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Edgewise control plane",
        description = "The model registry, the fleet, deployments and staged rollouts, telemetry and drift, training jobs and retraining policies."
    ),
    paths(
        models::push,
        models::list_models,
        models::list_versions,
        models::get_version,
        models::delete_version,
        models::list_aliases,
        models::set_alias,
        models::delete_alias,
        fleet::add_device,
        fleet::list_devices,
        fleet::get_device,
        fleet::move_device,
        fleet::revoke_device,
        auth::create_token,
        auth::list_tokens,
        auth::revoke_token,
        auth::whoami,
        auth::audit,
        keys::show,
        keys::rotate_deployment,
        keys::publish_release_rotation,
        fleet::list_groups,
        fleet::get_group,
        fleet::mosquitto_files,
        deployments::deploy,
        deployments::list_deployments,
        deployments::get_deployment,
        artifacts::download,
        telemetry::summary,
        telemetry::windows,
        telemetry::series,
        telemetry::alerts,
        telemetry::captures,
        training::upload_dataset,
        training::list_datasets,
        training::submit,
        training::list,
        training::get,
        training::cancel,
        training::logs,
        training::data,
        training::upload_bundle,
        training::approve,
        training::set_policy,
        training::get_policy,
        training::delete_policy,
        rollouts::start,
        rollouts::list,
        rollouts::get,
        rollouts::command,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Declares the bearer token scheme every non-public call uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`edgewise token create`). Roles: viewer reads; ci also releases; operator also manages devices; admin also tokens and the audit log.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %err, "request failed");
        }
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// A JSON body whose errors name the field at fault and answer 400 (413 when too big).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection: BytesRejection| {
                ApiError::new(rejection.status(), rejection.body_text())
            })?;
        decode_json(&bytes).map(JsonBody)
    }
}

/// Decodes a JSON request body; the error (400) says whether the JSON is broken or
/// which field is wrong, and how.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("request body is not valid JSON: {inner}"),
            )
        } else if path == "." {
            ApiError::new(StatusCode::BAD_REQUEST, format!("request body: {inner}"))
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("request body field `{path}`: {inner}"),
            )
        }
    })
}

/// Records `edgewise_api_requests_total` and `edgewise_api_request_duration_seconds`.
async fn record_latency(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("edgewise_api_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("edgewise_api_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no endpoint {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// Path parameters, with a JSON error when they do not decode.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PathParams<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}
