//! The HTTP server: the Open Inference Protocol v2 endpoints and `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::collections::HashMap;

use arc_swap::ArcSwapOption;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgewise_core::profile::DataProfile;
use edgewise_model::Candidate;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

use crate::batcher::{BatchError, Batcher};
use crate::binary;
use crate::error::ApiError;
use crate::observe::Recorder;
use crate::oip::{
    self, InferRequest, InferResponse, ModelMetadata, OUTPUT_LABEL, OUTPUT_PROBABILITIES,
    ResponseOutput, TensorMetadata,
};

/// What the server knows of the model it serves.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Model version, as text.
    pub version: String,
    /// Feature names, in input order.
    pub features: Vec<String>,
    /// Class labels, in output order.
    pub labels: Vec<String>,
}

/// A model ready to answer: what it is, and the batcher that runs it.
pub struct ServingModel {
    /// What the model is.
    pub info: ModelInfo,
    /// Its version number.
    pub version: u64,
    /// Its reference data profile, for drift.
    pub profile: Arc<DataProfile>,
    /// Its class labels, shared with remembered predictions.
    pub labels: Arc<Vec<String>>,
    /// The queue to its inference thread.
    pub batcher: Batcher,
    /// Where it runs.
    pub device: Candidate,
}

/// The model being served, swapped atomically by the update agent. A request holds the
/// model it started with until it ends, so a swap never fails a request in flight; the
/// old model's inference thread stops once its last request is answered.
#[derive(Clone, Default)]
pub struct ServingSlot {
    active: Arc<ArcSwapOption<ServingModel>>,
    shadow: Arc<ArcSwapOption<ServingModel>>,
}

impl ServingSlot {
    /// An empty slot: nothing is served until a model is installed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The model serving now, if any.
    pub fn current(&self) -> Option<Arc<ServingModel>> {
        self.active.load_full()
    }

    /// The candidate running in shadow, if any.
    pub fn shadow(&self) -> Option<Arc<ServingModel>> {
        self.shadow.load_full()
    }

    /// Sets (or clears) the shadow candidate.
    pub fn install_shadow(&self, model: Option<Arc<ServingModel>>) {
        self.shadow.store(model);
    }

    /// Makes `model` the one new requests go to; returns the one it replaces.
    pub fn install(&self, model: impl Into<Arc<ServingModel>>) -> Option<Arc<ServingModel>> {
        self.active.swap(Some(model.into()))
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    slot: ServingSlot,
    metrics: PrometheusHandle,
    pub(crate) recorder: Recorder,
}

impl AppState {
    /// State for serving whatever `slot` holds, rendering metrics from `metrics`, and
    /// recording what it sees in `recorder`.
    pub fn new(slot: ServingSlot, metrics: PrometheusHandle, recorder: Recorder) -> Self {
        AppState {
            slot,
            metrics,
            recorder,
        }
    }
}

/// The router with every endpoint; bodies over `max_body_bytes` get a 413.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({ "live": true })) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer))
        .route(
            "/v2/models/{name}/feedback",
            post(crate::feedback::feedback),
        )
        .route("/predict", post(crate::predict::predict))
        .route("/metrics", get(render_metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "edgewise-runtime",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"]
    }))
}

/// Ready once a model is installed; 503 before.
async fn server_ready(State(state): State<AppState>) -> Response {
    let ready = state.slot.current().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

/// The model serving now, or a 503 naming why there is none.
pub(crate) fn serving_model(state: &AppState) -> Result<Arc<ServingModel>, ApiError> {
    state.slot.current().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no model is installed on this node yet; it serves once its first assignment is applied",
        )
    })
}

fn find_model(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<ServingModel>, ApiError> {
    let serving = serving_model(state)?;
    let model = &serving.info;
    if name != model.name {
        return Err(ApiError::not_found(format!(
            "model {name:?} is not served here; this node serves {:?}",
            model.name
        )));
    }
    if let Some(version) = version
        && version != model.version
    {
        return Err(ApiError::not_found(format!(
            "model {name:?} version {version:?} is not served here; this node serves version {}",
            model.version
        )));
    }
    Ok(serving)
}

fn metadata(model: &ModelInfo) -> ModelMetadata {
    ModelMetadata {
        name: model.name.clone(),
        versions: vec![model.version.clone()],
        platform: "burn".to_string(),
        inputs: vec![TensorMetadata {
            name: oip::INPUT_TENSOR.to_string(),
            datatype: "FP32".to_string(),
            shape: vec![-1, model.features.len() as i64],
        }],
        outputs: vec![
            TensorMetadata {
                name: OUTPUT_PROBABILITIES.to_string(),
                datatype: "FP32".to_string(),
                shape: vec![-1, model.labels.len() as i64],
            },
            TensorMetadata {
                name: OUTPUT_LABEL.to_string(),
                datatype: "BYTES".to_string(),
                shape: vec![-1],
            },
        ],
    }
}

/// The `{name}` and optional `{version}` of a model path, with JSON errors for
/// undecodable segments.
pub struct ModelRef {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ModelRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        Ok(ModelRef {
            name: params.remove("name").unwrap_or_default(),
            version: params.remove("version"),
        })
    }
}

async fn model_metadata(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<ModelMetadata>, ApiError> {
    let found = find_model(&state, &model.name, model.version.as_deref())?;
    Ok(Json(metadata(&found.info)))
}

async fn model_ready(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<Value>, ApiError> {
    let found = find_model(&state, &model.name, model.version.as_deref())?;
    Ok(Json(
        json!({ "name": found.info.name, "version": found.info.version, "ready": true }),
    ))
}

/// Runs one infer call and records its outcome and latency.
async fn infer(
    State(state): State<AppState>,
    model: ModelRef,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let serving = find_model(&state, &model.name, model.version.as_deref());
    let result = match &serving {
        Ok(serving) => run_infer(&state, serving, &headers, body, started).await,
        Err(err) => Err(err.clone()),
    };
    finish_request(&state, serving.ok().as_deref(), started, result)
}

/// Records a request's outcome and latency against the model that ran it, and turns
/// the result into the answer.
pub(crate) fn finish_request(
    state: &AppState,
    serving: Option<&ServingModel>,
    started: Instant,
    result: Result<Response, ApiError>,
) -> Response {
    if result.is_err() {
        state
            .recorder
            .record_error(serving, started.elapsed().as_secs_f64());
    }
    let outcome = match &result {
        Ok(_) => "success",
        Err(err) if err.status == StatusCode::SERVICE_UNAVAILABLE => "overloaded",
        Err(err) if err.status.is_client_error() => "client_error",
        Err(_) => "server_error",
    };
    let (name, version) = serving.map_or((String::new(), String::new()), |model| {
        (model.info.name.clone(), model.info.version.clone())
    });
    metrics::counter!(
        "edgewise_inference_requests_total",
        "model" => name.clone(),
        "version" => version.clone(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "edgewise_inference_request_duration_seconds",
        "model" => name,
        "version" => version
    )
    .record(started.elapsed().as_secs_f64());
    match result {
        Ok(response) => response,
        Err(err) => {
            if err.status.is_server_error() {
                tracing::warn!(error = %err.message, "infer failed");
            }
            err.into_response()
        }
    }
}

/// Runs the same inputs through the shadow candidate, if one is installed, off the
/// request's path, and records whether it chose the same classes.
pub(crate) fn compare_in_shadow(
    state: &AppState,
    inputs: Vec<f32>,
    rows: usize,
    classes: Vec<usize>,
) {
    let (Some(shadow), Some(active)) = (state.slot.shadow(), state.slot.current()) else {
        return;
    };
    let recorder = state.recorder.clone();
    tokio::spawn(async move {
        if let Ok(probabilities) = shadow.batcher.predict(inputs, rows).await {
            let shadow_classes = best_classes(&probabilities, shadow.labels.len());
            let agreed: Vec<bool> = classes
                .iter()
                .zip(&shadow_classes)
                .map(|(a, b)| a == b)
                .collect();
            recorder.record_shadow(&active, shadow.version, &agreed);
        }
    });
}

/// Runs a decoded batch through the model's batcher, mapping failures to HTTP errors.
pub(crate) async fn run_batch(
    serving: &ServingModel,
    batch: oip::Batch,
) -> Result<Vec<f32>, ApiError> {
    serving
        .batcher
        .predict(batch.values, batch.rows)
        .await
        .map_err(|err| match err {
            BatchError::TooLarge { .. } => ApiError::bad_request(err.to_string()),
            BatchError::Overloaded(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
            BatchError::Stopped | BatchError::Inference(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
            }
        })
}

async fn run_infer(
    state: &AppState,
    serving: &ServingModel,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Result<Response, ApiError> {
    let model = &serving.info;
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!("request body: {}", rejection.body_text()),
        )
    })?;
    let binary_header = headers
        .get(binary::HEADER)
        .map(|value| value.to_str().unwrap_or_default());
    let request = match binary_header {
        Some(header) => {
            let (json, raw) = binary::split(&body, header).map_err(ApiError::bad_request)?;
            let mut request = parse_request(json)?;
            binary::fill_inputs(&mut request, raw).map_err(ApiError::bad_request)?;
            request
        }
        None => parse_request(&body)?,
    };
    let batch = oip::decode_inputs(&request, &model.features, serving.batcher.max_batch_size())
        .map_err(|err| ApiError::bad_request(err.to_string()))?;
    let rows = batch.rows;
    let inputs = batch.values.clone();
    let probabilities = run_batch(serving, batch).await?;
    let classes = best_classes(&probabilities, model.labels.len());
    state.recorder.record_success(
        serving,
        request.id.as_deref(),
        &inputs,
        &classes,
        started.elapsed().as_secs_f64(),
    );
    compare_in_shadow(state, inputs, rows, classes);
    let response = build_response(model, &request, &probabilities, rows);
    let wants_binary = |name: &str| binary::wants_binary(&request, name);
    if response
        .outputs
        .iter()
        .any(|output| wants_binary(&output.name))
    {
        let (body, header_length) = binary::encode(response, wants_binary);
        return Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    HeaderName::from_static(binary::HEADER),
                    header_length.to_string(),
                ),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(response).into_response())
}

/// Parses the JSON body, naming the field at fault.
fn parse_request(body: &[u8]) -> Result<InferRequest, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            let text = String::from_utf8_lossy(body);
            if text.contains("NaN") || text.contains("Infinity") {
                return ApiError::bad_request(
                    "request body is not valid JSON: NaN and Infinity are not numbers; every input value must be finite",
                );
            }
            return ApiError::bad_request(format!("request body is not valid JSON: {inner}"));
        }
        if path == "." {
            ApiError::bad_request(format!("request body is not a valid infer request: {inner}"))
        } else {
            ApiError::bad_request(format!("request body field {path}: {inner}"))
        }
    })
}

/// The index of the most probable class of each row.
pub(crate) fn best_classes(probabilities: &[f32], classes: usize) -> Vec<usize> {
    probabilities
        .chunks(classes.max(1))
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(index, _)| index)
        })
        .collect()
}

fn build_response(
    model: &ModelInfo,
    request: &InferRequest,
    probabilities: &[f32],
    rows: usize,
) -> InferResponse {
    let classes = model.labels.len();
    let labels: Vec<Value> = best_classes(probabilities, classes)
        .into_iter()
        .map(|best| Value::from(model.labels.get(best).cloned().unwrap_or_default()))
        .collect();
    let wanted = |name: &str| {
        request.outputs.as_ref().is_none_or(|outputs| {
            outputs.is_empty() || outputs.iter().any(|output| output.name == name)
        })
    };
    let mut outputs = Vec::new();
    if wanted(OUTPUT_PROBABILITIES) {
        outputs.push(ResponseOutput {
            name: OUTPUT_PROBABILITIES.to_string(),
            shape: vec![rows, classes],
            datatype: "FP32".to_string(),
            data: Value::from(probabilities.to_vec()),
            parameters: None,
        });
    }
    if wanted(OUTPUT_LABEL) {
        outputs.push(ResponseOutput {
            name: OUTPUT_LABEL.to_string(),
            shape: vec![rows],
            datatype: "BYTES".to_string(),
            data: Value::Array(labels),
            parameters: None,
        });
    }
    InferResponse {
        model_name: model.name.clone(),
        model_version: model.version.clone(),
        id: request.id.clone(),
        outputs,
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no endpoint {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}
