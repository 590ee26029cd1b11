//! Arbitrary bytes as `manifest.json`: parsed on its own and checked (as a node does
//! after the signature), and as the first entry of an otherwise well-formed bundle.
#![no_main]

use edgewise_core::bundle::{Bundle, MANIFEST_ENTRY, SIGNATURE_ENTRY};
use edgewise_core::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

/// A tar of the given entries; entries whose name the tar writer refuses are left out.
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let _ = builder.append_data(&mut header, name, *data);
    }
    builder.into_inner().unwrap_or_default()
}

const SIGNATURE: &[u8] = br#"{"algorithm":"ed25519","key_id":"0000000000000000","signature":""}"#;

fuzz_target!(|data: &[u8]| {
    let weights = match serde_json::from_slice::<Manifest>(data) {
        Ok(manifest) => {
            // What Bundle::verify runs once the signature holds.
            let _ = manifest.check();
            manifest.weights.file
        }
        Err(_) => "model.mpk".to_owned(),
    };
    let bytes = tar_of(&[
        (MANIFEST_ENTRY, data),
        (SIGNATURE_ENTRY, SIGNATURE),
        (&weights, b"weights"),
    ]);
    let _ = Bundle::open(&bytes);
});
