//! Arbitrary bytes as a key rotation document, and as the payload of a document signed
//! by the trusted key: parsing and applying must refuse or skip, never panic, and
//! never trust a key set that the new keys did not sign for.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use edgewise_core::keys::{SecretKey, TrustStore};
use edgewise_core::rotation::{KeyRole, RoleTrust, SignedKeyRotation};
use libfuzzer_sys::fuzz_target;

fn key_and_trust() -> &'static (SecretKey, RoleTrust) {
    static KEY: OnceLock<(SecretKey, RoleTrust)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SecretKey::generate();
        let mut trust = TrustStore::new();
        trust.add(key.public_key());
        (key, RoleTrust::initial(KeyRole::Release, trust))
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, current) = key_and_trust();
    // 1. The bytes as the document: never signed by this process's key.
    if let Ok(signed) = SignedKeyRotation::from_bytes(data) {
        assert!(!matches!(current.apply(&signed), Ok(Some(_))));
        let _ = signed.rotation();
    }
    // 2. The bytes as the payload, signed by the current key only: reaches the rotation
    //    parser and its checks, and still needs a signature by the new keys.
    let signed = SignedKeyRotation {
        payload: BASE64.encode(data),
        signatures: vec![key.sign(data)],
    };
    if let Ok(Some(next)) = current.apply(&signed) {
        assert_eq!(next.keys().key_ids(), vec![key.key_id()]);
    }
});
