//! Arbitrary bytes as a signed assignment envelope, and as the assignment JSON inside a
//! correctly signed envelope: parse, open and verify must refuse, never panic.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use edgewise_core::assignment::SignedAssignment;
use edgewise_core::keys::{SecretKey, TrustStore};
use libfuzzer_sys::fuzz_target;

fn key_and_trust() -> &'static (SecretKey, TrustStore) {
    static KEY: OnceLock<(SecretKey, TrustStore)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SecretKey::generate();
        let mut trust = TrustStore::new();
        trust.add(key.public_key());
        (key, trust)
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, trust) = key_and_trust();
    let now = SystemTime::now();
    // 1. The bytes as the envelope itself: never signed by this process's key.
    if let Ok(signed) = SignedAssignment::from_bytes(data) {
        assert!(signed.open(trust).is_err());
        assert!(signed.verify(trust, "node-1", 0, now).is_err());
        let again = SignedAssignment::from_bytes(&signed.to_bytes()).expect("re-parses");
        assert_eq!(again, signed);
    }
    // 2. The bytes as the payload of a correctly signed envelope: reaches the
    //    assignment parser and its field checks.
    let signed = SignedAssignment {
        payload: BASE64.encode(data),
        signature: key.sign(data),
        rotations: Vec::new(),
    };
    if let Ok(assignment) = signed.open(trust) {
        let _ = signed.verify(
            trust,
            &assignment.device_id,
            assignment.seq.saturating_sub(1),
            now,
        );
    }
});
