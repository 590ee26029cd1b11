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
    AppState, ServingModel, best_classes, finish_request, run_batch, serving_model,
};

/// The request body: exactly one of `features` or `instances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
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

/// Handles `POST /predict`.
pub async fn predict(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let serving = serving_model(&state);
    let result = match &serving {
        Ok(serving) => run_predict(serving, body).await,
        Err(err) => Err(err.clone()),
    };
    finish_request(serving.ok().as_deref(), started, result)
}

async fn run_predict(
    serving: &ServingModel,
    body: Result<Bytes, BytesRejection>,
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
    let rows = match (request.features, request.instances) {
        (Some(features), None) => Value::Array(vec![features]),
        (None, Some(instances)) => instances,
        _ => {
            return Err(ApiError::bad_request(
                "request body must hold exactly one of `features` (one example) or `instances` (a list of examples)",
            ));
        }
    };
    let count = rows.as_array().map_or(0, Vec::len);
    let model = &serving.info;
    let width = model.features.len();
    let infer = InferRequest {
        id: None,
        parameters: None,
        inputs: vec![RequestInput {
            name: oip::INPUT_TENSOR.to_string(),
            shape: vec![count as i64, width as i64],
            datatype: "FP32".to_string(),
            parameters: None,
            data: rows,
        }],
        outputs: None,
    };
    let batch = oip::decode_inputs(&infer, &model.features, serving.batcher.max_batch_size())
        .map_err(|err| {
            ApiError::bad_request(format!(
                "{err} (each example must be a list of {width} finite numbers: {})",
                model.features.join(", ")
            ))
        })?;
    let probabilities = run_batch(serving, batch).await?;
    let classes = model.labels.len().max(1);
    let predictions = best_classes(&probabilities, classes)
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
