//! `POST /predict`: a plain-JSON endpoint for people with curl.
//!
//! It takes `{"features": [...]}` (one example) or `{"instances": [[...], ...]}` and
//! answers `{"model", "version", "predictions": [{"label", "probabilities"}]}`. It goes
//! through the same validation, batcher and metrics as the OIP infer route.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::oip::{self, InferRequest, RequestInput};
use crate::server::{
    AppState, ServingModel, best_classes, compare_in_shadow, finish_request, run_batch,
    serving_model,
};

/// The request body: exactly one of `features` or `instances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    features: Option<Value>,
    #[serde(default)]
    instances: Option<Value>,
}

/// One example's answer.
#[derive(Debug, Serialize)]
struct Prediction {
    label: String,
    probabilities: Vec<f32>,
}

/// The answer.
#[derive(Debug, Serialize)]
struct PredictResponse {
    model: String,
    version: String,
    predictions: Vec<Prediction>,
}

/// Checks that one example is a list of `width` values, naming `field` if not.
fn check_example(
    field: &str,
    example: &Value,
    width: usize,
    features: &[String],
) -> Result<(), ApiError> {
    let found = example.as_array().map(Vec::len);
    if found == Some(width) {
        return Ok(());
    }
    let names = match features {
        [first, .., last] => format!("{first} … {last}"),
        _ => features.join(", "),
    };
    let found = found.map_or_else(|| "is not a list".to_owned(), |n| format!("has {n} values"));
    Err(ApiError::bad_request(format!(
        "`{field}` {found}; each example needs {width} numbers ({names})"
    )))
}

/// Handles `POST /predict`.
pub async fn predict(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let serving = serving_model(&state);
    let result = match &serving {
        Ok(serving) => run_predict(&state, serving, body, started).await,
        Err(err) => Err(err.clone()),
    };
    finish_request(&state, serving.ok().as_deref(), started, result)
}

async fn run_predict(
    state: &AppState,
    serving: &ServingModel,
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!("request body: {}", rejection.body_text()),
        )
    })?;
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let request: PredictRequest = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        ApiError::bad_request(format!(
            "request body must be {{\"features\": [...]}} or {{\"instances\": [[...], ...]}}: at `{}`: {}",
            err.path(),
            err.inner()
        ))
    })?;
    let model = &serving.info;
    let width = model.features.len();
    let request_id = request.id;
    let rows = match (request.features, request.instances) {
        (Some(features), None) => {
            check_example("features", &features, width, &model.features)?;
            vec![features]
        }
        (None, Some(Value::Array(instances))) if !instances.is_empty() => {
            for (index, example) in instances.iter().enumerate() {
                check_example(
                    &format!("instances[{index}]"),
                    example,
                    width,
                    &model.features,
                )?;
            }
            instances
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "`instances` must be a non-empty list of examples, each a list of numbers",
            ));
        }
        _ => {
            return Err(ApiError::bad_request(
                "request body must hold exactly one of `features` (one example) or `instances` (a list of examples)",
            ));
        }
    };
    let infer = InferRequest {
        id: None,
        parameters: None,
        inputs: vec![RequestInput {
            name: oip::INPUT_TENSOR.to_string(),
            shape: vec![rows.len() as i64, width as i64],
            datatype: "FP32".to_string(),
            parameters: None,
            data: Value::Array(rows),
        }],
        outputs: None,
    };
    let batch = oip::decode_inputs(&infer, &model.features, serving.batcher.max_batch_size())
        .map_err(|err| ApiError::bad_request(err.to_string()))?;
    let inputs = batch.values.clone();
    let probabilities = run_batch(serving, batch).await?;
    let classes = model.labels.len().max(1);
    let best = best_classes(&probabilities, classes);
    state.recorder.record_success(
        serving,
        request_id.as_deref(),
        &inputs,
        &best,
        started.elapsed().as_secs_f64(),
    );
    compare_in_shadow(state, inputs, best.len(), best.clone());
    let predictions = best
        .into_iter()
        .zip(probabilities.chunks(classes))
        .map(|(best, row)| Prediction {
            label: model.labels.get(best).cloned().unwrap_or_default(),
            probabilities: row.to_vec(),
        })
        .collect();
    Ok(Json(PredictResponse {
        model: model.name.clone(),
        version: model.version.clone(),
        predictions,
    })
    .into_response())
}
