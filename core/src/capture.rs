//! Data capture records, in the manner of SageMaker Edge Manager's `CaptureData`: a
//! sampled example with what the model answered and, once it arrives, the true label.
//! They ride in telemetry windows to the control plane, for retraining and analysis.

use serde::{Deserialize, Serialize};

/// One captured prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureRecord {
    /// The request id, when the caller gave one.
    pub id: Option<String>,
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: u64,
    /// When it was captured (RFC 3339).
    pub captured_at: String,
    /// The raw input values.
    pub inputs: Vec<f32>,
    /// The predicted label.
    pub prediction: String,
    /// The true label, if it arrived before the window closed.
    pub label: Option<String>,
}

/// A true label for a record captured in an earlier window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateLabel {
    /// The captured record's request id.
    pub id: String,
    /// The true label.
    pub label: String,
}
