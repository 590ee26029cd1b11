//! Arbitrary bytes as a bundle file: open must refuse or parse, verify must refuse
//! anything not signed by the trusted key, and neither may panic.
#![no_main]

use std::sync::OnceLock;

use edgewise_core::bundle::Bundle;
use edgewise_core::keys::{SecretKey, TrustStore};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        let mut trust = TrustStore::new();
        trust.add(SecretKey::generate().public_key());
        trust
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::open(data) {
        // Nothing the fuzzer writes is signed by a key generated in this process.
        assert!(bundle.verify(trust()).is_err());
        let _ = format!("{bundle:?}");
    }
});
