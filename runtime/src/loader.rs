//! Opening a bundle file for serving: verify it against the trust store, load it on
//! the chosen device, and run its self-test. Any failure refuses the bundle.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use edgewise_core::bundle::{Bundle, BundleError, sha256_hex};
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
    /// The inference thread could not be started.
    #[error("cannot start the inference thread: {0}")]
    Start(#[from] std::io::Error),
}

/// The models serving in this process, by signed manifest: lets the fleet simulator's
/// virtual nodes share one loaded copy, and one inference thread, per bundle. Every node
/// still reads its own file, hashes it and checks its signature and weights; only the
/// parse of a manifest already seen, the load and the self-test are shared. An entry
/// lives as long as some node serves it.
#[derive(Clone, Default)]
pub struct SharedModels(Arc<Mutex<HashMap<String, SharedModel>>>);

/// One model serving in the process, with the manifest it was parsed from.
struct SharedModel {
    model: Weak<ServingModel>,
    manifest: Manifest,
}

impl std::fmt::Debug for SharedModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedModels").finish_non_exhaustive()
    }
}

impl SharedModels {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn models(&self) -> MutexGuard<'_, HashMap<String, SharedModel>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &str) -> Option<Arc<ServingModel>> {
        let models = self.models();
        models.get(key).and_then(|shared| shared.model.upgrade())
    }

    /// The parsed manifest of a model serving here, by the sha256 of its bytes.
    fn manifest(&self, key: &str) -> Option<Manifest> {
        let models = self.models();
        models
            .get(key)
            .filter(|shared| shared.model.strong_count() > 0)
            .map(|shared| shared.manifest.clone())
    }

    fn insert(&self, key: String, model: &Arc<ServingModel>, manifest: Manifest) {
        let mut models = self.models();
        models.retain(|_, held| held.model.strong_count() > 0);
        models.insert(
            key,
            SharedModel {
                model: Arc::downgrade(model),
                manifest,
            },
        );
    }
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
    load_verified(bundle, device, batch_size)
}

/// Loads a verified bundle's model on `device` and runs its self-test.
fn load_verified(
    bundle: Bundle,
    device: DeviceChoice,
    batch_size: usize,
) -> Result<LoadedModel, LoadError> {
    let (predictor, timings) =
        Predictor::load(&bundle.manifest, &bundle.weights, device, batch_size)?;
    Ok(LoadedModel {
        manifest: bundle.manifest,
        predictor,
        timings,
    })
}

/// Reads and verifies the bundle at `path` and starts it serving. With `shared`, a copy
/// of the same signed bundle already serving in this process is reused.
pub fn open_bundle(
    path: &Path,
    trust: &TrustStore,
    device: DeviceChoice,
    batching: BatchingConfig,
    shared: Option<&SharedModels>,
) -> Result<Arc<ServingModel>, LoadError> {
    let mut key = None;
    let bundle = Bundle::read_reusing(path, |manifest_bytes| {
        let models = shared?;
        let digest = key.insert(sha256_hex(manifest_bytes));
        models.manifest(digest)
    })?;
    bundle.verify(trust)?;
    let (Some(models), Some(key)) = (shared, key) else {
        let loaded = load_verified(bundle, device, batching.max_batch_size)?;
        return Ok(Arc::new(start_serving(loaded, batching)?));
    };
    if let Some(model) = models.get(&key) {
        return Ok(model);
    }
    let manifest = bundle.manifest.clone();
    let loaded = load_verified(bundle, device, batching.max_batch_size)?;
    let model = Arc::new(start_serving(loaded, batching)?);
    models.insert(key, &model, manifest);
    Ok(model)
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
    let device = loaded.predictor.device().clone();
    let batcher = Batcher::start(loaded.predictor, batching)?;
    Ok(ServingModel {
        device,
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
