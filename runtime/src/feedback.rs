//! `POST /v2/models/{name}/feedback {"id", "label"}`: a delayed ground-truth label for
//! an earlier prediction, matched by the infer request's id. Labels feed the accuracy
//! in telemetry windows and the captured records.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::observe::FeedbackError;
use crate::server::{AppState, ModelRef};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Feedback {
    id: String,
    label: String,
}

/// Handles a label.
pub async fn feedback(
    State(state): State<AppState>,
    model: ModelRef,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body =
        body.map_err(|r| ApiError::new(r.status(), format!("request body: {}", r.body_text())))?;
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let feedback: Feedback = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        ApiError::bad_request(format!(
            "request body must be {{\"id\": \"...\", \"label\": \"...\"}}: at `{}`: {}",
            err.path(),
            err.inner()
        ))
    })?;
    let correct = state
        .recorder
        .feedback(&model.name, &feedback.id, &feedback.label)
        .map_err(|err| match err {
            FeedbackError::UnknownId { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, err.to_string())
            }
            FeedbackError::UnknownLabel { .. } | FeedbackError::WrongModel { .. } => {
                ApiError::bad_request(err.to_string())
            }
        })?;
    metrics::counter!("edgewise_feedback_labels_total", "correct" => correct.to_string())
        .increment(1);
    Ok(Json(json!({ "id": feedback.id, "correct": correct })))
}
