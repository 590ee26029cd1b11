//! The keys the control plane signs with and trusts, and their rotations.
//!
//! Version 1 of each role is what the data folder held before the first rotation:
//! `keys/release/*.pub` and `keys/deployment.pub`. The first rotation freezes that
//! baseline in the store, with every rotation after it, so node configs can always
//! carry the baseline plus the chain and any node walks it to the keys of today.
//!
//! - The deployment key rotates here (`rotate_deployment`): a new key is made, the
//!   rotation is signed by the old and the new key, and from the same instant every
//!   assignment is signed by the new key and carries the chain. Its secret replaces
//!   `keys/deployment.key`; the old secret is gone. A crash between the two steps is
//!   finished at the next start from `keys/deployment-next.key`.
//! - Release keys are held elsewhere (CI, an offline machine), so a release rotation
//!   is signed there and only checked and published here (`add_release_rotation`).
//!
//! Invariant: the deployment key in use is always in the deployment key set that the
//! chain ends at, so an assignment never names a key its envelope cannot prove.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use edgewise_core::assignment::{Assignment, SignedAssignment};
use edgewise_core::keys::{PublicKeyDocument, SecretKey, TrustStore};
use edgewise_core::node_config::TrustBundle;
use edgewise_core::rotation::{KeyRole, KeyRotation, RoleTrust, SignedKeyRotation, TrustState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::store::{Store, Table};

/// Store key of the [`KeyHistory`].
const HISTORY: &str = "history";

/// The baseline keys and every rotation since, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KeyHistory {
    /// Version 1 of the release keys.
    release_keys: Vec<PublicKeyDocument>,
    /// Version 1 of the deployment keys.
    deployment_keys: Vec<PublicKeyDocument>,
    /// Every rotation, in the order applied.
    rotations: Vec<SignedKeyRotation>,
}

/// One role's key set, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    /// Version of the key set: 1 before any rotation.
    pub version: u64,
    /// Signatures by this set that the next rotation needs.
    pub threshold: u32,
    /// The trusted key ids.
    pub key_ids: Vec<String>,
}

impl From<&RoleTrust> for RoleView {
    fn from(trust: &RoleTrust) -> Self {
        RoleView {
            version: trust.version(),
            threshold: trust.threshold(),
            key_ids: trust
                .keys()
                .key_ids()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// Both key sets and the rotation chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeysView {
    /// Keys whose bundles are accepted.
    pub release: RoleView,
    /// Keys that sign assignments; the first is the one in use.
    pub deployment: RoleView,
    /// Every rotation so far, as sent to nodes.
    #[schema(value_type = Vec<Object>)]
    pub rotations: Vec<SignedKeyRotation>,
}

/// What changes on rotation, behind one lock.
struct KeyState {
    history: KeyHistory,
    trust: TrustState,
    deployment_key: SecretKey,
}

/// The control plane's keys; cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    state: Arc<RwLock<KeyState>>,
    table: Table<KeyHistory>,
    store: Store,
    keys_folder: PathBuf,
}

impl Keyring {
    /// Loads the keys: the stored history if a rotation happened, else `release`
    /// (the release key folder) and `deployment_key` as version 1.
    pub fn open(
        store: &Store,
        keys_folder: &Path,
        release: &TrustStore,
        deployment_key: SecretKey,
    ) -> Result<Self> {
        let table: Table<KeyHistory> = store.table("key_rotations")?;
        let history = match table.get(HISTORY)? {
            Some(history) => {
                let baseline: Vec<&str> = history
                    .release_keys
                    .iter()
                    .map(|k| k.key_id.as_str())
                    .collect();
                let ignored: Vec<&str> = release
                    .key_ids()
                    .into_iter()
                    .filter(|id| !baseline.contains(id))
                    .collect();
                if !ignored.is_empty() {
                    tracing::warn!(
                        ?ignored,
                        "release keys added to keys/release after a rotation are not trusted; rotate to add a key"
                    );
                }
                history
            }
            None => KeyHistory {
                release_keys: release.keys().map(|k| k.to_document()).collect(),
                deployment_keys: vec![deployment_key.public_key().to_document()],
                rotations: Vec::new(),
            },
        };
        let trust = replay(&history)?;
        let deployment_key = current_deployment_key(keys_folder, &trust, deployment_key)?;
        Ok(Keyring {
            state: Arc::new(RwLock::new(KeyState {
                history,
                trust,
                deployment_key,
            })),
            table,
            store: store.clone(),
            keys_folder: keys_folder.to_owned(),
        })
    }

    /// Runs `read` on the state.
    fn read<T>(&self, read: impl FnOnce(&KeyState) -> T) -> T {
        read(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The release keys whose bundles are accepted now.
    pub fn release_trust(&self) -> TrustStore {
        self.read(|state| state.trust.release.keys().clone())
    }

    /// Signs `assignment` with the deployment key in use and attaches the rotation chain.
    pub fn sign(&self, assignment: &Assignment) -> SignedAssignment {
        self.read(|state| {
            let mut signed = assignment.sign(&state.deployment_key);
            signed.rotations = state.history.rotations.clone();
            signed
        })
    }

    /// The trust a new node config carries: the baseline keys, the chain and the CA.
    pub fn trust_bundle(&self, ca_certificate: &str) -> TrustBundle {
        self.read(|state| TrustBundle {
            release_keys: state.history.release_keys.clone(),
            deployment_keys: state.history.deployment_keys.clone(),
            ca_certificate: ca_certificate.to_owned(),
            rotations: state.history.rotations.clone(),
        })
    }

    /// Both key sets and the chain.
    pub fn view(&self) -> KeysView {
        self.read(view_of)
    }

    /// Replaces the deployment key with a new one, signed over by both.
    pub fn rotate_deployment(&self) -> Result<KeysView> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let new_key = SecretKey::generate();
        let next_prefix = self.keys_folder.join("deployment-next");
        for extension in ["key", "pub"] {
            let _ = fs::remove_file(next_prefix.with_extension(extension));
        }
        new_key
            .save(&next_prefix)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let rotation = KeyRotation::next(
            KeyRole::Deployment,
            state.trust.deployment.version(),
            &[new_key.public_key()],
            1,
            now_rfc3339(),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        let signed = rotation.sign(&[&state.deployment_key, &new_key]);
        self.commit(&mut state, signed)?;
        promote_next_key(&self.keys_folder).map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(
            old = state.deployment_key.key_id(),
            new = new_key.key_id(),
            "deployment key rotated"
        );
        state.deployment_key = new_key;
        Ok(view_of(&state))
    }

    /// Checks a release rotation signed elsewhere against the release keys trusted now
    /// and publishes it: new bundles must be signed by the new set, and nodes learn it
    /// with their next assignment.
    pub fn add_release_rotation(&self, signed: SignedKeyRotation) -> Result<KeysView> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let rotation = signed
            .rotation()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if rotation.role != KeyRole::Release {
            return Err(Error::Invalid(
                "field `role` must be `release`: the deployment key is rotated with POST /api/v1/keys/deployment/rotate, so the control plane holds the new key".into(),
            ));
        }
        if rotation.version <= state.trust.release.version() {
            return Err(Error::Conflict(format!(
                "release key version {} is already trusted; the next is {}",
                rotation.version,
                state.trust.release.version() + 1
            )));
        }
        self.commit(&mut state, signed)?;
        tracing::info!(version = rotation.version, "release keys rotated");
        Ok(view_of(&state))
    }

    /// Verifies `signed` against the trust now, then stores and applies it.
    fn commit(&self, state: &mut KeyState, signed: SignedKeyRotation) -> Result<()> {
        let mut trust = state.trust.clone();
        trust
            .apply_chain(std::slice::from_ref(&signed))
            .map_err(|e| Error::Rejected(e.to_string()))?;
        let mut history = state.history.clone();
        history.rotations.push(signed);
        self.table.put(HISTORY, &history)?;
        self.store.flush()?;
        metrics::counter!("edgewise_key_rotations_total").increment(1);
        state.history = history;
        state.trust = trust;
        Ok(())
    }
}

/// The view of `state`.
fn view_of(state: &KeyState) -> KeysView {
    KeysView {
        release: RoleView::from(&state.trust.release),
        deployment: RoleView::from(&state.trust.deployment),
        rotations: state.history.rotations.clone(),
    }
}

/// The trust the history ends at.
fn replay(history: &KeyHistory) -> Result<TrustState> {
    let bundle = TrustBundle {
        release_keys: history.release_keys.clone(),
        deployment_keys: history.deployment_keys.clone(),
        ca_certificate: String::new(),
        rotations: history.rotations.clone(),
    };
    bundle
        .trust_state()
        .map_err(|e| Error::Internal(format!("stored keys: {e}")))
}

/// The secret key of the deployment key set in force: `keys/deployment.key`, or the
/// `deployment-next.key` of a rotation interrupted before it was promoted.
fn current_deployment_key(
    folder: &Path,
    trust: &TrustState,
    loaded: SecretKey,
) -> Result<SecretKey> {
    let trusted = trust.deployment.keys().key_ids();
    if trusted.contains(&loaded.key_id()) {
        return Ok(loaded);
    }
    let next = folder.join("deployment-next.key");
    if let Ok(key) = SecretKey::load(&next)
        && trusted.contains(&key.key_id())
    {
        promote_next_key(folder).map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!(
            key_id = key.key_id(),
            "finished an interrupted deployment key rotation"
        );
        return Ok(key);
    }
    Err(Error::Internal(format!(
        "keys/deployment.key holds key {}, but the deployment keys in force are {}: restore the key file",
        loaded.key_id(),
        trusted.join(", ")
    )))
}

/// Moves `deployment-next.key`/`.pub` over `deployment.key`/`.pub`.
fn promote_next_key(folder: &Path) -> std::io::Result<()> {
    for extension in ["key", "pub"] {
        fs::rename(
            folder.join(format!("deployment-next.{extension}")),
            folder.join(format!("deployment.{extension}")),
        )?;
    }
    Ok(())
}

/// Now, as RFC 3339.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(dir: &Path, release: &SecretKey) -> Keyring {
        let store = Store::open(&dir.join("store")).expect("store");
        let mut trust = TrustStore::new();
        trust.add(release.public_key());
        let deployment = match SecretKey::load(&dir.join("deployment.key")) {
            Ok(key) => key,
            Err(_) => {
                let key = SecretKey::generate();
                key.save(&dir.join("deployment")).expect("saves");
                key
            }
        };
        Keyring::open(&store, dir, &trust, deployment).expect("opens")
    }

    #[test]
    fn rotations_survive_a_restart_and_new_configs_carry_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let release = SecretKey::generate();
        let ring = keyring(dir.path(), &release);
        let before = ring.view().deployment.key_ids;
        let rotated = ring.rotate_deployment().expect("rotates");
        assert_eq!(rotated.deployment.version, 2);
        assert_ne!(rotated.deployment.key_ids, before);

        let new_release = SecretKey::generate();
        let signed = KeyRotation::next(
            KeyRole::Release,
            1,
            &[release.public_key(), new_release.public_key()],
            1,
            now_rfc3339(),
        )
        .expect("valid")
        .sign(&[&release, &new_release]);
        assert!(
            ring.add_release_rotation(
                KeyRotation::next(
                    KeyRole::Release,
                    1,
                    &[new_release.public_key()],
                    1,
                    now_rfc3339()
                )
                .expect("valid")
                .sign(&[&new_release])
            )
            .is_err(),
            "the current release key must sign"
        );
        assert_eq!(
            ring.add_release_rotation(signed)
                .expect("adds")
                .release
                .version,
            2
        );
        drop(ring);

        let reopened = keyring(dir.path(), &release);
        let view = reopened.view();
        assert_eq!(view.deployment.key_ids, rotated.deployment.key_ids);
        assert_eq!(view.release.version, 2);
        let node = reopened.trust_bundle("ca").trust_state().expect("walks");
        assert_eq!(node.deployment.version(), 2);
        assert_eq!(node.release.keys().key_ids().len(), 2);
    }
}
