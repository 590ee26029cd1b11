//! Key rotation: signed documents that replace the set of keys trusted for one role.
//!
//! Each role (release keys, deployment keys) has a numbered key set. A node starts at
//! version 1, the keys in its node config. Version N+1 replaces version N only through
//! a [`SignedKeyRotation`] that carries
//!
//! ```json
//! {"payload":"<base64 of the KeyRotation JSON>","signatures":[{"algorithm":"ed25519","key_id":"…","signature":"…"}]}
//! ```
//!
//! and is signed by at least `threshold` keys of version N *and* at least `threshold`
//! keys of version N+1, as TUF rotates its root role: the current keys vouch for the
//! new ones, and the new keys prove they are held. Versions are applied one at a time,
//! in order, so a node that was offline through several rotations walks the chain. A
//! document for a version the node already has is skipped, so the same chain can be
//! sent to every node.
//!
//! Rotation documents are self-authenticating: they travel beside the assignment, in its
//! envelope, and a node applies them before it checks the assignment's signature. So
//! the first assignment signed by a new deployment key already carries the proof that
//! the key is trusted, and no node ever sees a valid assignment it cannot check.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::json::parse_bounded;
use crate::keys::{DetachedSignature, PublicKey, PublicKeyDocument, SecretKey, TrustStore};

/// Largest accepted rotation document, in bytes of its JSON.
pub const MAX_ROTATION_BYTES: usize = 16 * 1024;

/// Most keys one role may trust at once.
pub const MAX_ROLE_KEYS: usize = 16;

/// Most signatures one rotation document may carry.
pub const MAX_ROTATION_SIGNATURES: usize = 32;

/// Which key set a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Keys that sign bundles (their manifests).
    Release,
    /// Keys that sign assignments.
    Deployment,
}

impl std::fmt::Display for KeyRole {
    /// `release` or `deployment`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyRole::Release => "release",
            KeyRole::Deployment => "deployment",
        })
    }
}

/// Version N of one role's key set, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The role whose keys this replaces.
    pub role: KeyRole,
    /// The new version: exactly one above the version it replaces.
    pub version: u64,
    /// How many of `keys` must sign the next rotation of this role.
    pub threshold: u32,
    /// The whole new key set; keys not listed are no longer trusted.
    pub keys: Vec<PublicKeyDocument>,
    /// When it was made (RFC 3339), for people reading it.
    pub issued_at: String,
}

/// A rotation document with its signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedKeyRotation {
    /// Base64 of the [`KeyRotation`] JSON bytes.
    pub payload: String,
    /// Signatures over the decoded payload bytes, by current and new keys.
    pub signatures: Vec<DetachedSignature>,
}

/// Why a rotation document was refused.
#[derive(Debug, Error)]
pub enum RotationError {
    /// The document is not what was expected; names the field.
    #[error("malformed key rotation: {0}")]
    Malformed(String),
    /// The document rotates the other role.
    #[error("key rotation is for the {found} keys, expected the {expected} keys")]
    WrongRole {
        /// The role being rotated here.
        expected: KeyRole,
        /// The role the document names.
        found: KeyRole,
    },
    /// A version in the chain is missing.
    #[error(
        "{role} key rotation version {found} cannot follow version {current}: version {} is missing",
        current + 1
    )]
    OutOfOrder {
        /// The role.
        role: KeyRole,
        /// The version trusted now.
        current: u64,
        /// The version offered.
        found: u64,
    },
    /// Too few valid signatures by the current or by the new keys.
    #[error(
        "{role} key rotation version {version} has {valid} valid signature(s) by the {which} keys, {threshold} needed (signed by: {})",
        if signers.is_empty() { "nobody".to_owned() } else { signers.join(", ") }
    )]
    NotEnoughSignatures {
        /// The role.
        role: KeyRole,
        /// The version offered.
        version: u64,
        /// `current` or `new`.
        which: &'static str,
        /// Valid signatures found from that set.
        valid: usize,
        /// Signatures needed from that set.
        threshold: u32,
        /// Key ids of every signature on the document.
        signers: Vec<String>,
    },
}

impl KeyRotation {
    /// The rotation of `role` that follows version `current`, to `keys` with
    /// `threshold`; checked.
    pub fn next(
        role: KeyRole,
        current: u64,
        keys: &[PublicKey],
        threshold: u32,
        issued_at: String,
    ) -> Result<Self, RotationError> {
        let rotation = KeyRotation {
            role,
            version: current + 1,
            threshold,
            keys: keys.iter().map(PublicKey::to_document).collect(),
            issued_at,
        };
        rotation.key_set()?;
        Ok(rotation)
    }

    /// Signs this document with each of `signers`.
    pub fn sign(&self, signers: &[&SecretKey]) -> SignedKeyRotation {
        // Serialising a struct of strings and integers cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        SignedKeyRotation {
            payload: BASE64.encode(&bytes),
            signatures: signers.iter().map(|key| key.sign(&bytes)).collect(),
        }
    }

    /// The new key set as a trust store, checking threshold, count and duplicates.
    fn key_set(&self) -> Result<TrustStore, RotationError> {
        if self.keys.is_empty() || self.keys.len() > MAX_ROLE_KEYS {
            return Err(RotationError::Malformed(format!(
                "field `keys` must hold 1 to {MAX_ROLE_KEYS} keys, found {}",
                self.keys.len()
            )));
        }
        let mut store = TrustStore::new();
        for (index, document) in self.keys.iter().enumerate() {
            let source = format!("keys[{index}]");
            let key = PublicKey::from_document(document, std::path::Path::new(&source))
                .map_err(|e| RotationError::Malformed(e.to_string()))?;
            store.add(key);
        }
        if store.key_ids().len() != self.keys.len() {
            return Err(RotationError::Malformed(
                "field `keys` lists a key twice".into(),
            ));
        }
        if self.threshold == 0 || self.threshold as usize > self.keys.len() {
            return Err(RotationError::Malformed(format!(
                "field `threshold` is {}, expected 1 to {} (the number of keys)",
                self.threshold,
                self.keys.len()
            )));
        }
        Ok(store)
    }
}

impl SignedKeyRotation {
    /// Parses a document from JSON bytes, refusing anything over [`MAX_ROTATION_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RotationError> {
        parse_bounded(bytes, MAX_ROTATION_BYTES, "document").map_err(RotationError::Malformed)
    }

    /// The document as pretty JSON, for a file.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The payload bytes and the rotation they hold, not yet verified.
    fn decode(&self) -> Result<(Vec<u8>, KeyRotation), RotationError> {
        let bytes = BASE64.decode(&self.payload).map_err(|e| {
            RotationError::Malformed(format!("field `payload` is not valid base64: {e}"))
        })?;
        let rotation = parse_bounded(&bytes, MAX_ROTATION_BYTES, "payload")
            .map_err(RotationError::Malformed)?;
        Ok((bytes, rotation))
    }

    /// The rotation inside, without checking any signature (to show or route it).
    pub fn rotation(&self) -> Result<KeyRotation, RotationError> {
        Ok(self.decode()?.1)
    }

    /// Adds `key`'s signature, replacing an earlier one by the same key.
    pub fn add_signature(&mut self, key: &SecretKey) -> Result<(), RotationError> {
        let (bytes, _) = self.decode()?;
        self.signatures.retain(|s| s.key_id != key.key_id());
        self.signatures.push(key.sign(&bytes));
        Ok(())
    }
}

/// Counts the distinct keys of `trust` with a valid signature over `bytes`.
fn valid_signers(trust: &TrustStore, bytes: &[u8], signatures: &[DetachedSignature]) -> usize {
    let mut signers: Vec<&str> = signatures
        .iter()
        .filter(|signature| trust.verify(bytes, signature).is_ok())
        .map(|signature| signature.key_id.as_str())
        .collect();
    signers.sort_unstable();
    signers.dedup();
    signers.len()
}

/// The keys one role trusts now, at which version, and every key it ever trusted.
#[derive(Debug, Clone)]
pub struct RoleTrust {
    role: KeyRole,
    version: u64,
    threshold: u32,
    keys: TrustStore,
    ever_trusted: TrustStore,
}

impl RoleTrust {
    /// Version 1: the keys a node is configured with, any one of which signs.
    pub fn initial(role: KeyRole, keys: TrustStore) -> Self {
        RoleTrust {
            role,
            version: 1,
            threshold: 1,
            ever_trusted: keys.clone(),
            keys,
        }
    }

    /// The role.
    pub fn role(&self) -> KeyRole {
        self.role
    }

    /// The version of the key set trusted now.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many current keys must sign the next rotation.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The keys trusted now.
    pub fn keys(&self) -> &TrustStore {
        &self.keys
    }

    /// Every key trusted at some version: enough to re-check a bundle installed before
    /// a rotation, never to accept a new one.
    pub fn ever_trusted(&self) -> &TrustStore {
        &self.ever_trusted
    }

    /// Applies one rotation: `Ok(None)` when this version is already trusted (or
    /// passed), the new trust when the document verifies, an error otherwise.
    pub fn apply(&self, signed: &SignedKeyRotation) -> Result<Option<RoleTrust>, RotationError> {
        let (bytes, rotation) = signed.decode()?;
        if rotation.role != self.role {
            return Err(RotationError::WrongRole {
                expected: self.role,
                found: rotation.role,
            });
        }
        if rotation.version <= self.version {
            return Ok(None);
        }
        if rotation.version != self.version + 1 {
            return Err(RotationError::OutOfOrder {
                role: self.role,
                current: self.version,
                found: rotation.version,
            });
        }
        if signed.signatures.len() > MAX_ROTATION_SIGNATURES {
            return Err(RotationError::Malformed(format!(
                "field `signatures` holds {}, the limit is {MAX_ROTATION_SIGNATURES}",
                signed.signatures.len()
            )));
        }
        let new_keys = rotation.key_set()?;
        for (which, trust, threshold) in [
            ("current", &self.keys, self.threshold),
            ("new", &new_keys, rotation.threshold),
        ] {
            let valid = valid_signers(trust, &bytes, &signed.signatures);
            if valid < threshold as usize {
                return Err(RotationError::NotEnoughSignatures {
                    role: self.role,
                    version: rotation.version,
                    which,
                    valid,
                    threshold,
                    signers: signed.signatures.iter().map(|s| s.key_id.clone()).collect(),
                });
            }
        }
        let mut ever_trusted = self.ever_trusted.clone();
        for key in new_keys.keys() {
            ever_trusted.add(key.clone());
        }
        Ok(Some(RoleTrust {
            role: self.role,
            version: rotation.version,
            threshold: rotation.threshold,
            keys: new_keys,
            ever_trusted,
        }))
    }
}

/// What a node trusts: its release and deployment key sets.
#[derive(Debug, Clone)]
pub struct TrustState {
    /// Keys that sign bundles.
    pub release: RoleTrust,
    /// Keys that sign assignments.
    pub deployment: RoleTrust,
}

impl TrustState {
    /// Version 1 of both roles.
    pub fn initial(release: TrustStore, deployment: TrustStore) -> Self {
        TrustState {
            release: RoleTrust::initial(KeyRole::Release, release),
            deployment: RoleTrust::initial(KeyRole::Deployment, deployment),
        }
    }

    /// The trust of `role`.
    pub fn role(&self, role: KeyRole) -> &RoleTrust {
        match role {
            KeyRole::Release => &self.release,
            KeyRole::Deployment => &self.deployment,
        }
    }

    /// Applies every document of `chain` in version order, skipping versions already
    /// trusted; returns the documents that changed something. Nothing is applied
    /// unless the whole chain verifies.
    pub fn apply_chain(
        &mut self,
        chain: &[SignedKeyRotation],
    ) -> Result<Vec<SignedKeyRotation>, RotationError> {
        let mut ordered = Vec::with_capacity(chain.len());
        for signed in chain {
            let rotation = signed.rotation()?;
            ordered.push(((rotation.role, rotation.version), signed));
        }
        ordered.sort_by_key(|(order, _)| *order);
        let mut next = self.clone();
        let mut applied = Vec::new();
        for (_, signed) in ordered {
            let role = signed.rotation()?.role;
            if let Some(trust) = next.role(role).apply(signed)? {
                match role {
                    KeyRole::Release => next.release = trust,
                    KeyRole::Deployment => next.deployment = trust,
                }
                applied.push(signed.clone());
            }
        }
        *self = next;
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust_of(keys: &[&SecretKey]) -> TrustStore {
        let mut trust = TrustStore::new();
        for key in keys {
            trust.add(key.public_key());
        }
        trust
    }

    fn rotate(current: &RoleTrust, to: &[&SecretKey], threshold: u32) -> KeyRotation {
        let keys: Vec<PublicKey> = to.iter().map(|k| k.public_key()).collect();
        KeyRotation::next(
            current.role(),
            current.version(),
            &keys,
            threshold,
            "2026-12-06T00:00:00Z".into(),
        )
        .expect("valid rotation")
    }

    #[test]
    fn a_rotation_signed_by_the_current_and_new_keys_replaces_the_keys() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let trust = RoleTrust::initial(KeyRole::Deployment, trust_of(&[&old]));
        let signed = rotate(&trust, &[&new], 1).sign(&[&old, &new]);
        let rotated = trust.apply(&signed).expect("verifies").expect("applies");
        assert_eq!(rotated.version(), 2);
        assert_eq!(rotated.keys().key_ids(), vec![new.key_id()]);
        assert_eq!(rotated.ever_trusted().key_ids().len(), 2);
        assert!(
            rotated.apply(&signed).expect("known").is_none(),
            "replay skipped"
        );
    }

    #[test]
    fn refuses_rotations_missing_a_signature_or_a_version() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let trust = RoleTrust::initial(KeyRole::Release, trust_of(&[&old]));
        let rotation = rotate(&trust, &[&new], 1);
        for (signers, which) in [(vec![&new], "current"), (vec![&old], "new")] {
            match trust.apply(&rotation.sign(&signers)) {
                Err(RotationError::NotEnoughSignatures { which: found, .. }) => {
                    assert_eq!(found, which)
                }
                other => panic!("expected a missing {which} signature, got {other:?}"),
            }
        }
        let mut skipping = rotation.clone();
        skipping.version = 3;
        assert!(matches!(
            trust.apply(&skipping.sign(&[&old, &new])),
            Err(RotationError::OutOfOrder {
                current: 1,
                found: 3,
                ..
            })
        ));
        let mut other_role = rotation.clone();
        other_role.role = KeyRole::Deployment;
        assert!(matches!(
            trust.apply(&other_role.sign(&[&old, &new])),
            Err(RotationError::WrongRole { .. })
        ));
        let mut tampered = rotation.sign(&[&old, &new]);
        let mut bytes = BASE64.decode(&tampered.payload).expect("base64");
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        tampered.payload = BASE64.encode(bytes);
        assert!(trust.apply(&tampered).is_err());
        let release = KeyRole::Release;
        assert!(KeyRotation::next(release, 1, &[new.public_key()], 2, String::new()).is_err());
        assert!(KeyRotation::next(release, 1, &[], 1, String::new()).is_err());
    }

    #[test]
    fn a_threshold_needs_k_of_n_signatures_for_the_next_rotation() {
        let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate()).collect();
        let first = SecretKey::generate();
        let trust = RoleTrust::initial(KeyRole::Release, trust_of(&[&first]));
        let all: Vec<&SecretKey> = keys.iter().collect();
        let to_three = rotate(&trust, &all, 2);
        assert!(
            trust.apply(&to_three.sign(&[&first, &keys[0]])).is_err(),
            "2 of the new keys must sign"
        );
        let two_of_three = trust
            .apply(&to_three.sign(&[&first, &keys[0], &keys[2]]))
            .expect("verifies")
            .expect("applies");
        let last = SecretKey::generate();
        let onward = rotate(&two_of_three, &[&last], 1);
        assert!(
            two_of_three
                .apply(&onward.sign(&[&keys[1], &keys[1], &last]))
                .is_err(),
            "one key signing twice counts once"
        );
        let mut signed = onward.sign(&[&keys[1], &last]);
        signed.add_signature(&keys[2]).expect("adds");
        assert_eq!(
            two_of_three
                .apply(&signed)
                .expect("verifies")
                .expect("applies")
                .version(),
            3
        );
    }

    #[test]
    fn a_node_offline_through_several_rotations_walks_the_chain_in_order() {
        let keys: Vec<SecretKey> = (0..4).map(|_| SecretKey::generate()).collect();
        let release = SecretKey::generate();
        let mut signer = TrustState::initial(trust_of(&[&release]), trust_of(&[&keys[0]]));
        let mut chain = Vec::new();
        for pair in keys.windows(2) {
            let signed = rotate(&signer.deployment, &[&pair[1]], 1).sign(&[&pair[0], &pair[1]]);
            signer
                .apply_chain(std::slice::from_ref(&signed))
                .expect("applies");
            chain.push(signed);
        }
        chain.reverse();
        let mut node = TrustState::initial(trust_of(&[&release]), trust_of(&[&keys[0]]));
        assert_eq!(node.apply_chain(&chain).expect("walks").len(), 3);
        assert_eq!(node.deployment.version(), 4);
        assert_eq!(node.deployment.keys().key_ids(), vec![keys[3].key_id()]);
        assert!(node.apply_chain(&chain).expect("known").is_empty());

        let mut fresh = TrustState::initial(trust_of(&[&release]), trust_of(&[&keys[0]]));
        assert!(
            fresh.apply_chain(&chain[..2]).is_err(),
            "version 2 is missing"
        );
        assert_eq!(fresh.deployment.version(), 1, "nothing applied");
    }
}
