//! The assignment: the control plane's signed order telling one device which bundle
//! to run.
//!
//! On the wire an assignment travels as a [`SignedAssignment`] envelope:
//!
//! ```json
//! {"payload":"<base64 of the assignment JSON bytes>","signature":{"algorithm":"ed25519","key_id":"…","signature":"…"},"rotations":[…]}
//! ```
//!
//! `rotations` (optional) is the control plane's chain of signed key rotations. They sit
//! outside the signed payload because each one proves itself (see [`crate::rotation`]);
//! a node applies them before it checks the assignment's signature.
//!
//! The signature covers the exact payload bytes, so no canonical JSON is needed. A node
//! applies an assignment only if [`SignedAssignment::verify`] accepts it: a trusted
//! deployment key signed it, it names this device, its `seq` is above the last applied
//! one and it has not expired. The bundle checks (hash, release signature, self-test)
//! follow when the bytes arrive.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::{DetachedSignature, KeyError, SecretKey, TrustStore};
use crate::rotation::SignedKeyRotation;

/// Largest accepted envelope, in bytes: an assignment is small and a key rotation chain
/// a few KiB; anything bigger is hostile.
pub const MAX_ASSIGNMENT_BYTES: usize = 64 * 1024;

/// Whether the assigned model serves answers or only runs beside the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentMode {
    /// Serve the model's answers.
    Active,
    /// Run the model on the same inputs and report agreement, without serving it.
    Shadow,
}

/// One device's order to run one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// The device this order is for.
    pub device_id: String,
    /// Increases with every assignment to this device; a node never applies a lower one.
    pub seq: u64,
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: u64,
    /// sha256 of the bundle file, lower-case hex.
    pub bundle_sha256: String,
    /// Bundle size in bytes; a node never downloads more.
    pub size: u64,
    /// Where the bytes can be fetched: `quic://HOST:PORT` and `https?://…/api/v1/artifacts/{sha256}`.
    pub locations: Vec<String>,
    /// The rollout this order belongs to, if any.
    #[serde(default)]
    pub rollout_id: Option<String>,
    /// The rollout stage, if any.
    #[serde(default)]
    pub stage: Option<u32>,
    /// Active or shadow.
    pub mode: AssignmentMode,
    /// When the control plane issued it (RFC 3339).
    pub issued_at: String,
    /// After this instant (RFC 3339) a node refuses it.
    pub expires_at: String,
}

/// A signed assignment as published on a device's `desired` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAssignment {
    /// Base64 of the assignment's JSON bytes.
    pub payload: String,
    /// The deployment key's signature over the decoded payload bytes.
    pub signature: DetachedSignature,
    /// Key rotations the node applies first, so it trusts the key that signed this.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<SignedKeyRotation>,
}

/// Why an assignment was refused.
#[derive(Debug, Error)]
pub enum AssignmentError {
    /// The envelope or the assignment inside is not what was expected.
    #[error("malformed assignment: {0}")]
    Malformed(String),
    /// The signature is missing, untrusted or wrong.
    #[error("assignment signature: {0}")]
    Signature(#[from] KeyError),
    /// The assignment names another device.
    #[error("assignment is for device {found:?}, this is device {expected:?}")]
    WrongDevice {
        /// This device's id.
        expected: String,
        /// The id in the assignment.
        found: String,
    },
    /// The seq is not above the last applied one.
    #[error(
        "assignment seq {seq} is not above the last applied seq {last_applied}: replayed or out of date"
    )]
    Replayed {
        /// The assignment's seq.
        seq: u64,
        /// The last seq this device applied.
        last_applied: u64,
    },
    /// The assignment's lifetime is over.
    #[error("assignment seq {seq} expired at {expires_at}")]
    Expired {
        /// The assignment's seq.
        seq: u64,
        /// Its expiry.
        expires_at: String,
    },
}

impl Assignment {
    /// Signs this assignment with the deployment key.
    pub fn sign(&self, key: &SecretKey) -> SignedAssignment {
        // Serialising a struct of strings and integers cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        SignedAssignment {
            payload: BASE64.encode(&bytes),
            signature: key.sign(&bytes),
            rotations: Vec::new(),
        }
    }

    /// `issued_at` and `expires_at` for an assignment issued at `now` that lives `ttl`.
    pub fn lifetime(now: SystemTime, ttl: Duration) -> (String, String) {
        (
            humantime::format_rfc3339_seconds(now).to_string(),
            humantime::format_rfc3339_seconds(now + ttl).to_string(),
        )
    }

    /// Checks field shapes: device id, model name, hash and time formats.
    fn check_fields(&self) -> Result<(), AssignmentError> {
        crate::topics::check_device_id(&self.device_id)
            .map_err(|e| AssignmentError::Malformed(format!("field `device_id` {e}")))?;
        if self.model.is_empty() {
            return Err(AssignmentError::Malformed(
                "field `model` must not be empty".into(),
            ));
        }
        if self.bundle_sha256.len() != 64
            || !self
                .bundle_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(AssignmentError::Malformed(
                "field `bundle_sha256` must be 64 lower-case hex characters".into(),
            ));
        }
        for (field, value) in [
            ("issued_at", &self.issued_at),
            ("expires_at", &self.expires_at),
        ] {
            humantime::parse_rfc3339_weak(value).map_err(|e| {
                AssignmentError::Malformed(format!("field `{field}` is not an RFC 3339 time: {e}"))
            })?;
        }
        Ok(())
    }
}

impl SignedAssignment {
    /// Parses an envelope from MQTT payload bytes, refusing anything over [`MAX_ASSIGNMENT_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AssignmentError> {
        crate::json::parse_bounded(bytes, MAX_ASSIGNMENT_BYTES, "envelope")
            .map_err(AssignmentError::Malformed)
    }

    /// The envelope as JSON bytes, ready to publish.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the signature against `trust` and decodes the assignment, without the
    /// device, replay and expiry rules (what the control plane needs to read its own).
    pub fn open(&self, trust: &TrustStore) -> Result<Assignment, AssignmentError> {
        let bytes = BASE64.decode(&self.payload).map_err(|e| {
            AssignmentError::Malformed(format!("field `payload` is not valid base64: {e}"))
        })?;
        trust.verify(&bytes, &self.signature)?;
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        let assignment: Assignment =
            serde_path_to_error::deserialize(deserializer).map_err(|e| {
                AssignmentError::Malformed(format!("assignment at `{}`: {}", e.path(), e.inner()))
            })?;
        assignment.check_fields()?;
        Ok(assignment)
    }

    /// Applies every rule a node checks before acting on an assignment: a trusted
    /// signature, its own device id, a seq above `last_applied_seq`, and not expired at `now`.
    pub fn verify(
        &self,
        trust: &TrustStore,
        device_id: &str,
        last_applied_seq: u64,
        now: SystemTime,
    ) -> Result<Assignment, AssignmentError> {
        let assignment = self.open(trust)?;
        if assignment.device_id != device_id {
            return Err(AssignmentError::WrongDevice {
                expected: device_id.to_owned(),
                found: assignment.device_id,
            });
        }
        if assignment.seq <= last_applied_seq {
            return Err(AssignmentError::Replayed {
                seq: assignment.seq,
                last_applied: last_applied_seq,
            });
        }
        let expires = humantime::parse_rfc3339_weak(&assignment.expires_at).map_err(|e| {
            AssignmentError::Malformed(format!("field `expires_at` is not an RFC 3339 time: {e}"))
        })?;
        if now > expires {
            return Err(AssignmentError::Expired {
                seq: assignment.seq,
                expires_at: assignment.expires_at,
            });
        }
        Ok(assignment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64, ttl: Duration) -> Assignment {
        let (issued_at, expires_at) = Assignment::lifetime(SystemTime::now(), ttl);
        Assignment {
            device_id: "node-1".into(),
            seq,
            model: "digits".into(),
            version: 1,
            bundle_sha256: "ab".repeat(32),
            size: 10,
            locations: vec!["quic://127.0.0.1:8701".into()],
            rollout_id: None,
            stage: None,
            mode: AssignmentMode::Active,
            issued_at,
            expires_at,
        }
    }

    fn trust_of(key: &SecretKey) -> TrustStore {
        let mut trust = TrustStore::new();
        trust.add(key.public_key());
        trust
    }

    #[test]
    fn accepts_a_fresh_assignment_for_this_device() {
        let key = SecretKey::generate();
        let signed = sample(3, Duration::from_secs(60)).sign(&key);
        let parsed = SignedAssignment::from_bytes(&signed.to_bytes()).expect("parses");
        let assignment = parsed
            .verify(&trust_of(&key), "node-1", 2, SystemTime::now())
            .expect("valid");
        assert_eq!(assignment.seq, 3);
    }

    #[test]
    fn refuses_every_kind_of_bad_assignment() {
        let key = SecretKey::generate();
        let trust = trust_of(&key);
        let now = SystemTime::now();
        let good = sample(3, Duration::from_secs(60)).sign(&key);

        let other_key = sample(3, Duration::from_secs(60)).sign(&SecretKey::generate());
        assert!(matches!(
            other_key.verify(&trust, "node-1", 0, now),
            Err(AssignmentError::Signature(KeyError::UntrustedKey { .. }))
        ));
        assert!(matches!(
            good.verify(&trust, "node-2", 0, now),
            Err(AssignmentError::WrongDevice { .. })
        ));
        assert!(matches!(
            good.verify(&trust, "node-1", 3, now),
            Err(AssignmentError::Replayed {
                seq: 3,
                last_applied: 3
            })
        ));
        assert!(matches!(
            good.verify(&trust, "node-1", 0, now + Duration::from_secs(120)),
            Err(AssignmentError::Expired { .. })
        ));
        let mut tampered = good.clone();
        let mut bytes = BASE64.decode(&tampered.payload).expect("base64");
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        tampered.payload = BASE64.encode(bytes);
        assert!(matches!(
            tampered.verify(&trust, "node-1", 0, now),
            Err(AssignmentError::Signature(KeyError::BadSignature { .. }))
        ));
        assert!(SignedAssignment::from_bytes(b"{\"payload\":1}").is_err());
        assert!(SignedAssignment::from_bytes(&vec![b' '; MAX_ASSIGNMENT_BYTES + 1]).is_err());
    }
}
