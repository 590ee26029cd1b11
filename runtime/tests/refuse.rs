//! The runtime refuses, with a clear message and a non-zero exit, every bundle it
//! cannot trust or whose model does not reproduce its self-test.

mod common;

use std::path::{Path, PathBuf};

use common::{fixture, serve_expecting_exit};
use edgewise_core::bundle::{Bundle, pack};

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = fixture().dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn original() -> Vec<u8> {
    std::fs::read(&fixture().bundle).expect("read bundle")
}

fn refusal(bundle: &Path) -> String {
    let output = serve_expecting_exit(bundle, &fixture().trusted);
    assert!(!output.status.success(), "the runtime must exit non-zero");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Offset of the data of tar entry `name`.
fn entry_offset(bytes: &[u8], name: &str) -> usize {
    let mut archive = tar::Archive::new(bytes);
    let entries = archive.entries().expect("tar");
    for entry in entries {
        let entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == name {
            return entry.raw_file_position() as usize;
        }
    }
    panic!("no entry {name}");
}

#[test]
fn a_flipped_manifest_byte_is_refused() {
    let mut bytes = original();
    let start = entry_offset(&bytes, "manifest.json");
    let name_at = bytes[start..]
        .windows(8)
        .position(|window| window == b"\"digits\"")
        .expect("model name in manifest")
        + start
        + 1;
    bytes[name_at] ^= 0x01; // "digits" -> "eigits"
    let message = refusal(&write("tampered-manifest.bundle", &bytes));
    assert!(message.contains("refusing to serve"), "{message}");
    assert!(message.to_lowercase().contains("signature"), "{message}");
}

#[test]
fn a_flipped_weights_byte_is_refused() {
    let mut bytes = original();
    let start = entry_offset(&bytes, "weights.bpk");
    bytes[start + 200] ^= 0x01;
    let message = refusal(&write("tampered-weights.bundle", &bytes));
    assert!(message.contains("sha256"), "{message}");
}

#[test]
fn an_unsigned_bundle_is_refused() {
    let opened = Bundle::open(&original()).expect("open");
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", &opened.manifest_bytes),
        ("weights.bpk", &opened.weights),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_slice())
            .expect("append");
    }
    let unsigned = builder.into_inner().expect("tar");
    let message = refusal(&write("unsigned.bundle", &unsigned));
    assert!(
        message.to_lowercase().contains("unsigned") || message.contains("manifest.sig"),
        "{message}"
    );
}

#[test]
fn a_bundle_signed_by_an_untrusted_key_is_refused() {
    let output = serve_expecting_exit(&fixture().bundle, &fixture().stranger);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&fixture().key.key_id().to_string()),
        "{message}"
    );
    assert!(message.contains("trust"), "{message}");
}

#[test]
fn a_model_failing_its_self_test_is_refused() {
    let opened = Bundle::open(&original()).expect("open");
    let mut manifest = opened.manifest.clone();
    let row = &mut manifest.self_test.expected_probabilities[0];
    row.reverse(); // the right probabilities, for the wrong classes
    let bytes = pack(&manifest, &opened.weights, &fixture().key).expect("pack");
    let message = refusal(&write("bad-self-test.bundle", &bytes));
    assert!(message.contains("self-test failed"), "{message}");
}
