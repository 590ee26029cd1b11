//! `edgewise-model` turns a JSON model spec into a burn network, saves and loads its
//! weights, picks the device it runs on, and answers predictions with class
//! probabilities. Training and inference share this code.
//!
//! It knows nothing of HTTP, MQTT or files beyond the bytes it is handed: the
//! runtime and the trainer do the IO.

pub mod dense;
pub mod device;
pub mod network;
pub mod predictor;
pub mod weights;

pub use device::{Candidate, DeviceChoice, DeviceError};
pub use network::Network;
pub use predictor::{DeviceTiming, Predictor};

use edgewise_core::spec::SpecError;
use thiserror::Error;

/// Why a model could not be built, loaded or run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The spec does not describe a valid network.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No device could be chosen.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The weights do not fit the spec or are not a burnpack record.
    #[error("weights do not load: {0}")]
    Weights(String),
    /// The input does not hold `batch` examples of the model's width.
    #[error("input must hold batch x {expected} values, got {got} values for a batch of {batch}")]
    InputShape {
        /// Values per example.
        expected: usize,
        /// Values given.
        got: usize,
        /// Examples claimed.
        batch: usize,
    },
    /// The manifest's parts disagree (e.g. self-test rows that do not fit the model).
    #[error(transparent)]
    Manifest(#[from] edgewise_core::manifest::ManifestError),
    /// The loaded model does not reproduce the manifest's self-test.
    #[error(
        "self-test failed: example {example}, class {class}: expected {expected}, got {got} (tolerance {tolerance})"
    )]
    SelfTestFailed {
        /// Example index.
        example: usize,
        /// Class index.
        class: usize,
        /// Expected probability.
        expected: f32,
        /// Computed probability.
        got: f32,
        /// Allowed absolute difference.
        tolerance: f32,
    },
    /// The backend failed while running.
    #[error("backend error: {0}")]
    Backend(String),
}
