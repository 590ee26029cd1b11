//! Arbitrary bytes as a signed assignment envelope, and as the assignment JSON inside a
//! correctly signed envelope: parse, open and verify must refuse, never panic.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

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
        payload: base64_encode(data),
        signature: key.sign(data),
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

/// Standard base64 with padding, without pulling in the base64 crate.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
