//! The model registry: signed bundles, verified on upload against the trusted release
//! keys, stored content-addressed and never changed; MLflow-style aliases on top.

use std::time::SystemTime;

use edgewise_core::bundle::{Bundle, sha256_hex};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::artifacts::ArtifactStore;
use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::store::{Store, VersionRecord, version_key};

/// A model with its versions and aliases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// Registered version numbers, ascending.
    pub versions: Vec<u64>,
    /// Alias → version.
    pub aliases: std::collections::BTreeMap<String, u64>,
}

/// One feature of a version's reference profile, summarised.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeatureSummary {
    /// Feature name.
    pub name: String,
    /// Number of reference bins.
    pub bins: usize,
    /// Lowest inner bin edge.
    pub low: Option<f64>,
    /// Highest inner bin edge.
    pub high: Option<f64>,
}

/// A version as the API shows it: metrics, lineage and a profile summary.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// sha256 of the bundle.
    pub bundle_sha256: String,
    /// Bundle size in bytes.
    pub size: u64,
    /// When it was registered.
    pub registered_at: String,
    /// When it was trained.
    pub created_at: String,
    /// Release key that signed it.
    pub signer_key_id: String,
    /// Aliases pointing at it.
    pub aliases: Vec<String>,
    /// Evaluation metrics.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// Training lineage.
    #[schema(value_type = Object)]
    pub lineage: serde_json::Value,
    /// Input features, summarised from the reference profile.
    pub profile: Vec<FeatureSummary>,
    /// Output labels with their reference frequencies.
    pub class_frequencies: std::collections::BTreeMap<String, f64>,
}

/// Longest accepted model or alias name.
const MAX_NAME_LEN: usize = 64;

/// Checks a model or alias name: 1 to 64 of letters, digits, `-`, `_`, `.`.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{kind} {name:?} must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', not starting with '.' or '-'"
        )))
    }
}

/// The registry.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    artifacts: ArtifactStore,
    keyring: Keyring,
}

impl Registry {
    /// A registry over `store`, keeping bundle files in `artifacts`, trusting the
    /// release keys of `keyring`.
    pub fn new(store: Store, artifacts: ArtifactStore, keyring: Keyring) -> Self {
        Registry {
            store,
            artifacts,
            keyring,
        }
    }

    /// Errors unless `version` is signed by a release key trusted now: a release key
    /// rotation retires older signatures, and nodes would refuse such a bundle.
    pub fn check_signer(&self, version: &VersionRecord) -> Result<()> {
        let trust = self.keyring.release_trust();
        if trust
            .key_ids()
            .contains(&version.manifest.signer_key_id.as_str())
        {
            return Ok(());
        }
        Err(Error::Rejected(format!(
            "{} version {} is signed by release key {}, which a key rotation retired (trusted now: {}); push it again signed by a trusted key",
            version.model,
            version.version,
            version.manifest.signer_key_id,
            trust.key_ids().join(", ")
        )))
    }

    /// The bundle files.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Verifies and registers a bundle uploaded for model `name`. With an S3 store the
    /// version is registered only once the bundle is in the bucket.
    pub async fn push(
        &self,
        name: &str,
        bytes: impl AsRef<[u8]> + Send + 'static,
    ) -> Result<VersionRecord> {
        let registry = self.clone();
        let owned_name = name.to_owned();
        let record =
            tokio::task::spawn_blocking(move || registry.stage(&owned_name, bytes.as_ref()))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        self.artifacts
            .publish(&record.bundle_sha256)
            .await
            .map_err(|e| {
                Error::Unavailable(format!("the artifact store refused the bundle: {e}"))
            })?;
        let registry = self.clone();
        tokio::task::spawn_blocking(move || registry.commit(record))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Verifies a bundle for model `name` and keeps its file; returns the record that
    /// [`Registry::commit`] registers.
    fn stage(&self, name: &str, bytes: &[u8]) -> Result<VersionRecord> {
        check_name("model name", name)?;
        let bundle = Bundle::open(bytes)
            .map_err(|e| Error::Invalid(format!("request body is not a valid bundle: {e}")))?;
        let trust = self.keyring.release_trust();
        bundle.verify(&trust).map_err(|e| {
            Error::Rejected(format!(
                "bundle refused: {e} (trusted release keys: {})",
                trust.key_ids().join(", ")
            ))
        })?;
        let manifest = bundle.manifest;
        if manifest.name != name {
            return Err(Error::Invalid(format!(
                "the bundle's manifest names model {:?}, but it was pushed to {name:?}",
                manifest.name
            )));
        }
        let sha256 = sha256_hex(bytes);
        self.refuse_existing(name, manifest.version)?;
        let path = self.artifacts.path(&sha256);
        let staging = self.artifacts.folder().join(format!(".{sha256}.tmp"));
        std::fs::write(&staging, bytes)
            .and_then(|()| std::fs::rename(&staging, &path))
            .map_err(|e| Error::Internal(format!("cannot store the bundle: {e}")))?;
        Ok(VersionRecord {
            model: name.to_owned(),
            version: manifest.version,
            bundle_sha256: sha256,
            size: bytes.len() as u64,
            registered_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            manifest,
        })
    }

    /// Errors if `name` version `version` is registered: versions are immutable.
    fn refuse_existing(&self, name: &str, version: u64) -> Result<()> {
        match self.store.versions.get(&version_key(name, version))? {
            Some(existing) => Err(Error::Conflict(format!(
                "{name} version {version} is already registered (bundle {}); versions are immutable, push a higher version",
                existing.bundle_sha256
            ))),
            None => Ok(()),
        }
    }

    /// Registers a staged version whose bundle is stored.
    fn commit(&self, record: VersionRecord) -> Result<VersionRecord> {
        let _guard = self.store.lock();
        self.refuse_existing(&record.model, record.version)?;
        self.store
            .versions
            .put(&version_key(&record.model, record.version), &record)?;
        self.store.flush()?;
        tracing::info!(model = %record.model, version = record.version, sha256 = %record.bundle_sha256, "version registered");
        Ok(record)
    }

    /// Every model with its versions and aliases.
    pub fn models(&self) -> Result<Vec<ModelSummary>> {
        let mut models: Vec<ModelSummary> = Vec::new();
        for record in self.store.versions.all()? {
            match models.last_mut() {
                Some(last) if last.name == record.model => last.versions.push(record.version),
                _ => models.push(ModelSummary {
                    name: record.model.clone(),
                    versions: vec![record.version],
                    aliases: Default::default(),
                }),
            }
        }
        for model in &mut models {
            model.aliases = self.aliases(&model.name)?;
        }
        Ok(models)
    }

    /// The versions of `model`, ascending.
    pub fn versions(&self, model: &str) -> Result<Vec<VersionView>> {
        let records: Vec<VersionRecord> = self
            .store
            .versions
            .scan(&format!("{model}/"))?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        if records.is_empty() {
            return Err(Error::NotFound(format!(
                "no model named {model:?} is registered"
            )));
        }
        let aliases = self.aliases(model)?;
        Ok(records
            .iter()
            .map(|record| view(record, &aliases))
            .collect())
    }

    /// One version as a view.
    pub fn version_view(&self, model: &str, reference: &str) -> Result<VersionView> {
        let record = self.resolve(model, reference)?;
        Ok(view(&record, &self.aliases(model)?))
    }

    /// The version `reference` names: a number, or an alias.
    pub fn resolve(&self, model: &str, reference: &str) -> Result<VersionRecord> {
        let version = match reference.parse::<u64>() {
            Ok(version) => version,
            Err(_) => self
                .store
                .aliases
                .get(&format!("{model}/{reference}"))?
                .ok_or_else(|| {
                    Error::NotFound(format!("{model} has no version or alias {reference:?}"))
                })?,
        };
        self.store
            .versions
            .get(&version_key(model, version))?
            .ok_or_else(|| Error::NotFound(format!("{model} version {version} is not registered")))
    }

    /// Deletes a version that no device is assigned; its aliases go with it, and its
    /// bundle too when no other version uses it.
    pub async fn delete(&self, model: &str, version: u64) -> Result<()> {
        let registry = self.clone();
        let owned_model = model.to_owned();
        let unused = tokio::task::spawn_blocking(move || registry.forget(&owned_model, version))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if let Some(sha256) = unused
            && let Err(err) = self.artifacts.remove(&sha256).await
        {
            tracing::warn!(sha256, error = %err, "the deleted version's bundle stays in the artifact store");
        }
        Ok(())
    }

    /// Removes a version's records; returns its bundle's hash when no version uses it any more.
    fn forget(&self, model: &str, version: u64) -> Result<Option<String>> {
        let _guard = self.store.lock();
        let record = self.resolve(model, &version.to_string())?;
        let assigned: Vec<String> = self
            .store
            .devices
            .all()?
            .into_iter()
            .filter(|device| {
                device
                    .assignment
                    .as_ref()
                    .is_some_and(|a| a.model == model && a.version == version)
            })
            .map(|device| device.id)
            .collect();
        if !assigned.is_empty() {
            return Err(Error::Conflict(format!(
                "{model} version {version} is assigned to {} device(s) ({}); deploy another version first",
                assigned.len(),
                assigned.join(", ")
            )));
        }
        for (alias, target) in self.aliases(model)? {
            if target == version {
                self.store.aliases.remove(&format!("{model}/{alias}"))?;
            }
        }
        self.store.versions.remove(&version_key(model, version))?;
        self.store.flush()?;
        let still_used = self
            .store
            .versions
            .all()?
            .iter()
            .any(|other| other.bundle_sha256 == record.bundle_sha256);
        Ok((!still_used).then_some(record.bundle_sha256))
    }

    /// The aliases of `model`.
    pub fn aliases(&self, model: &str) -> Result<std::collections::BTreeMap<String, u64>> {
        let prefix = format!("{model}/");
        Ok(self
            .store
            .aliases
            .scan(&prefix)?
            .into_iter()
            .map(|(key, version)| (key[prefix.len()..].to_owned(), version))
            .collect())
    }

    /// Points `alias` at `version` (creating or moving it).
    pub fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<()> {
        check_name("alias", alias)?;
        if alias.parse::<u64>().is_ok() {
            return Err(Error::Invalid(format!(
                "alias {alias:?} must not be a number: numbers name versions"
            )));
        }
        self.resolve(model, &version.to_string())?;
        self.store
            .aliases
            .put(&format!("{model}/{alias}"), &version)?;
        self.store.flush()?;
        Ok(())
    }

    /// Deletes `alias`.
    pub fn delete_alias(&self, model: &str, alias: &str) -> Result<()> {
        if !self.store.aliases.remove(&format!("{model}/{alias}"))? {
            return Err(Error::NotFound(format!("{model} has no alias {alias:?}")));
        }
        self.store.flush()?;
        Ok(())
    }
}

/// Builds the API view of a version.
fn view(record: &VersionRecord, aliases: &std::collections::BTreeMap<String, u64>) -> VersionView {
    let manifest = &record.manifest;
    let lineage = serde_json::to_value(&manifest.lineage).unwrap_or_default();
    let metrics = lineage.get("metrics").cloned().unwrap_or_default();
    let profile = manifest
        .profile
        .features
        .iter()
        .map(|feature| FeatureSummary {
            name: feature.name.clone(),
            bins: feature.reference_frequencies.len(),
            low: feature.bin_edges.first().copied(),
            high: feature.bin_edges.last().copied(),
        })
        .collect();
    let class_frequencies = manifest
        .output
        .labels
        .iter()
        .cloned()
        .zip(manifest.profile.class_frequencies.iter().copied())
        .collect();
    VersionView {
        model: record.model.clone(),
        version: record.version,
        bundle_sha256: record.bundle_sha256.clone(),
        size: record.size,
        registered_at: record.registered_at.clone(),
        created_at: manifest.created_at.clone(),
        signer_key_id: manifest.signer_key_id.clone(),
        aliases: aliases
            .iter()
            .filter(|(_, version)| **version == record.version)
            .map(|(alias, _)| alias.clone())
            .collect(),
        metrics,
        lineage,
        profile,
        class_frequencies,
    }
}
