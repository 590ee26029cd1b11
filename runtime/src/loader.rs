//! Opening a bundle file for serving: verify it against the trust store, load it on
//! the chosen device, and run its self-test. Any failure refuses the bundle.

use std::path::Path;
use std::sync::Arc;

use edgewise_core::bundle::{Bundle, BundleError};
use edgewise_core::keys::TrustStore;
use edgewise_core::manifest::Manifest;
use edgewise_model::{DeviceChoice, DeviceTiming, ModelError, Predictor};
use thiserror::Error;

use crate::batcher::{Batcher, BatchingConfig};
use crate::server::{ModelInfo, ServingModel};
use crate::telemetry;

/// A bundle that passed every check, loaded and ready.
#[derive(Debug)]
pub struct LoadedModel {
    /// The verified manifest.
    pub manifest: Manifest,
    /// The model on its device.
    pub predictor: Predictor,
    /// What `auto` measured per device (empty otherwise).
    pub timings: Vec<DeviceTiming>,
}

/// Why a bundle was refused.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file is unreadable, unsigned, tampered with or signed by an untrusted key.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The model did not load, or failed its self-test.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Reads, verifies and loads the bundle at `path`.
pub fn load_bundle(
    path: &Path,
    trust: &TrustStore,
    device: DeviceChoice,
    batch_size: usize,
) -> Result<LoadedModel, LoadError> {
    let bundle = Bundle::read(path)?;
    bundle.verify(trust)?;
    let (predictor, timings) =
        Predictor::load(&bundle.manifest, &bundle.weights, device, batch_size)?;
    Ok(LoadedModel {
        manifest: bundle.manifest,
        predictor,
        timings,
    })
}

/// Starts the inference thread for a loaded model and describes it in the metrics.
pub fn start_serving(
    loaded: LoadedModel,
    batching: BatchingConfig,
) -> std::io::Result<ServingModel> {
    let manifest = loaded.manifest;
    let version = manifest.version.to_string();
    telemetry::describe_model(
        &manifest.name,
        &version,
        &loaded.predictor.device().description,
        &manifest.signer_key_id,
    );
    let batcher = Batcher::start(loaded.predictor, batching)?;
    Ok(ServingModel {
        version: manifest.version,
        profile: Arc::new(manifest.profile),
        labels: Arc::new(manifest.output.labels.clone()),
        info: ModelInfo {
            name: manifest.name,
            version,
            features: manifest.input.features,
            labels: manifest.output.labels,
        },
        batcher,
    })
}
