//! Property tests for key rotation documents, which a node takes from any assignment
//! envelope before it trusts anything in it: hostile bytes are refused without a panic
//! and never change the keys, a rotation applies exactly when enough current and new
//! keys signed the next version, a changed byte breaks it, and the size limit holds.

mod fixtures;

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use edgewise_core::keys::SecretKey;
use edgewise_core::rotation::{
    KeyRole, KeyRotation, MAX_ROTATION_BYTES, RoleTrust, RotationError, SignedKeyRotation,
};
use fixtures::trust;
use proptest::collection::vec;
use proptest::prelude::*;

/// Five keys: the first is trusted at version 1, the others are candidates.
fn keys() -> &'static [SecretKey] {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| (0..5).map(|_| SecretKey::generate()).collect())
}

/// Version 1 of the deployment keys: the first key alone.
fn current() -> RoleTrust {
    RoleTrust::initial(KeyRole::Deployment, trust(&[&keys()[0]]))
}

/// A valid rotation to keys 1 and 2 with threshold 1, signed by keys 0 and 1.
fn valid_rotation() -> SignedKeyRotation {
    let rotation = KeyRotation {
        role: KeyRole::Deployment,
        version: 2,
        threshold: 1,
        keys: vec![
            keys()[1].public_key().to_document(),
            keys()[2].public_key().to_document(),
        ],
        issued_at: "2026-12-06T00:00:00Z".into(),
    };
    rotation.sign(&[&keys()[0], &keys()[1]])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Arbitrary bytes as a document, or as the payload of a document signed by the
    /// current key, are refused or skipped, never applied, never a panic.
    #[test]
    fn arbitrary_bytes_never_change_the_keys(bytes in vec(any::<u8>(), 0..2048)) {
        let current = current();
        if let Ok(signed) = SignedKeyRotation::from_bytes(&bytes) {
            prop_assert!(!matches!(current.apply(&signed), Ok(Some(_))));
        }
        let signed = SignedKeyRotation {
            payload: BASE64.encode(&bytes),
            signatures: vec![keys()[0].sign(&bytes)],
        };
        prop_assert!(!matches!(current.apply(&signed), Ok(Some(_))));
    }

    /// Flipping any bit of a valid document's signed payload means it no longer applies.
    #[test]
    fn a_flipped_payload_byte_is_refused(at in any::<proptest::sample::Index>(), mask in 1u8..=255) {
        let mut signed = valid_rotation();
        let mut payload = BASE64.decode(&signed.payload).expect("base64");
        let at = at.index(payload.len());
        payload[at] ^= mask;
        signed.payload = BASE64.encode(payload);
        prop_assert!(!matches!(current().apply(&signed), Ok(Some(_))));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A rotation applies exactly when it is the next version, its threshold fits its
    /// keys, and enough current and new keys signed it.
    #[test]
    fn applies_exactly_when_the_rules_hold(
        version in 0u64..5,
        threshold in 0u32..5,
        new_keys in proptest::sample::subsequence(vec![1usize, 2, 3, 4], 0..=4),
        signers in proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4], 0..=5),
    ) {
        let rotation = KeyRotation {
            role: KeyRole::Deployment,
            version,
            threshold,
            keys: new_keys.iter().map(|&i| keys()[i].public_key().to_document()).collect(),
            issued_at: "2026-12-06T00:00:00Z".into(),
        };
        let signing: Vec<&SecretKey> = signers.iter().map(|&i| &keys()[i]).collect();
        let outcome = current().apply(&rotation.sign(&signing));
        let new_signers = signers.iter().filter(|i| new_keys.contains(i)).count();
        let valid = version == 2
            && !new_keys.is_empty()
            && threshold >= 1
            && threshold as usize <= new_keys.len()
            && signers.contains(&0)
            && new_signers >= threshold as usize;
        match outcome {
            Ok(Some(next)) => {
                prop_assert!(valid, "applied an invalid rotation");
                prop_assert_eq!(next.version(), 2);
                prop_assert_eq!(next.keys().key_ids().len(), new_keys.len());
            }
            Ok(None) => prop_assert!(version <= 1),
            Err(err) => {
                prop_assert!(!valid, "refused a valid rotation: {err}");
                if version > 2 {
                    let out_of_order = matches!(err, RotationError::OutOfOrder { .. });
                    prop_assert!(out_of_order, "{err}");
                }
            }
        }
    }

    /// A document padded past 16 KiB is refused with an error naming the limit; at or
    /// below it parses back to the same document.
    #[test]
    fn document_size_limit(extra in -512i64..4096) {
        let signed = valid_rotation();
        let mut bytes = serde_json::to_vec(&signed).expect("json");
        let total = (MAX_ROTATION_BYTES as i64 + extra) as usize;
        bytes.resize(total, b' ');
        match SignedKeyRotation::from_bytes(&bytes) {
            Ok(parsed) => {
                prop_assert!(total <= MAX_ROTATION_BYTES);
                prop_assert_eq!(parsed, signed);
            }
            Err(err) => {
                prop_assert!(total > MAX_ROTATION_BYTES);
                prop_assert!(err.to_string().contains(&MAX_ROTATION_BYTES.to_string()));
            }
        }
    }
}
