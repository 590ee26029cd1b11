//! Bundle packing, signing and verification, as a release engineer and a node see it.

mod fixtures;

use std::path::{Path, PathBuf};

use edgewise_core::bundle::{
    Bundle, BundleError, MANIFEST_ENTRY, SIGNATURE_ENTRY, pack, sha256_hex,
};
use edgewise_core::keys::{DetachedSignature, KeyError, PublicKey, SecretKey, TrustStore};
use fixtures::{WEIGHTS_FILE, entry_spans, manifest, span_of, tar_of, trust, weights};

#[test]
fn packed_bundle_opens_and_verifies() {
    let key = SecretKey::generate();
    let weights = weights();
    let bytes = pack(&manifest(), &weights, &key).unwrap();

    let names: Vec<String> = entry_spans(&bytes).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, [MANIFEST_ENTRY, SIGNATURE_ENTRY, WEIGHTS_FILE]);

    let bundle = Bundle::open(&bytes).unwrap();
    bundle.verify(&trust(&[&key])).unwrap();
    assert_eq!(bundle.weights, weights);
    assert_eq!(bundle.manifest.signer_key_id, key.key_id());
    assert_eq!(bundle.manifest.weights.sha256, sha256_hex(&weights));
    assert_eq!(bundle.manifest.weights.size, weights.len() as u64);
    assert_eq!(bundle.signature.as_ref().unwrap().key_id, key.key_id());
    assert_eq!(bundle.signature.as_ref().unwrap().algorithm, "ed25519");

    let mut expected = manifest();
    expected.signer_key_id = key.key_id().to_owned();
    expected.weights.sha256 = sha256_hex(&weights);
    expected.weights.size = weights.len() as u64;
    assert_eq!(bundle.manifest, expected);
}

#[test]
fn pack_is_deterministic() {
    let key = SecretKey::generate();
    let first = pack(&manifest(), &weights(), &key).unwrap();
    let second = pack(&manifest(), &weights(), &key).unwrap();
    assert_eq!(first, second);
    assert_eq!(sha256_hex(&first), sha256_hex(&second));

    let mut archive = tar::Archive::new(first.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 0);
        assert_eq!(header.username_bytes().unwrap_or_default(), b"");
        assert_eq!(header.groupname_bytes().unwrap_or_default(), b"");
    }
}

#[test]
fn a_changed_manifest_byte_breaks_the_signature() {
    let key = SecretKey::generate();
    let mut bytes = pack(&manifest(), &weights(), &key).unwrap();
    let (start, len) = span_of(&bytes, MANIFEST_ENTRY);
    let needle = b"\"name\": \"rainfall\"";
    let at = bytes[start..start + len]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    // Turn "rainfall" into "sainfall": still valid JSON, still the same length.
    bytes[start + at + needle.len() - 9] ^= 0x01;

    let bundle = Bundle::open(&bytes).unwrap();
    assert_eq!(bundle.manifest.name, "sainfall");
    let err = bundle.verify(&trust(&[&key])).unwrap_err();
    assert!(
        matches!(err, BundleError::Signature(KeyError::BadSignature { ref key_id }) if key_id == key.key_id()),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not match the signed bytes"),
        "{err}"
    );
}

#[test]
fn a_changed_weights_byte_fails_the_hash_check() {
    let key = SecretKey::generate();
    let weights = weights();
    let mut bytes = pack(&manifest(), &weights, &key).unwrap();
    let (start, len) = span_of(&bytes, WEIGHTS_FILE);
    bytes[start + len / 2] ^= 0xff;

    let bundle = Bundle::open(&bytes).unwrap();
    let err = bundle.verify(&trust(&[&key])).unwrap_err();
    assert!(matches!(err, BundleError::WeightsHash { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("weights sha256 mismatch"), "{msg}");
    assert!(
        msg.contains(&format!("manifest says {}", sha256_hex(&weights))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("file has {}", sha256_hex(&bundle.weights))),
        "{msg}"
    );
}

#[test]
fn an_unknown_signer_is_untrusted() {
    let signer = SecretKey::generate();
    let trusted = SecretKey::generate();
    let bytes = pack(&manifest(), &weights(), &signer).unwrap();
    let err = Bundle::open(&bytes)
        .unwrap()
        .verify(&trust(&[&trusted]))
        .unwrap_err();
    assert!(
        matches!(err, BundleError::Signature(KeyError::UntrustedKey { ref key_id, .. }) if key_id == signer.key_id()),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(signer.key_id()) && msg.contains(trusted.key_id()),
        "{msg}"
    );

    let err = Bundle::open(&bytes)
        .unwrap()
        .verify(&TrustStore::new())
        .unwrap_err();
    assert!(err.to_string().contains("trusted key ids: none"), "{err}");
}

#[test]
fn a_trust_store_with_two_keys_accepts_both_signers() {
    let old = SecretKey::generate();
    let new = SecretKey::generate();
    let store = trust(&[&old, &new]);
    let mut ids = vec![old.key_id(), new.key_id()];
    ids.sort();
    assert_eq!(store.key_ids(), ids);
    for key in [&old, &new] {
        let bytes = pack(&manifest(), &weights(), key).unwrap();
        Bundle::open(&bytes).unwrap().verify(&store).unwrap();
    }
}

#[test]
fn resign_switches_the_signer() {
    let old = SecretKey::generate();
    let new = SecretKey::generate();
    let bundle = Bundle::open(&pack(&manifest(), &weights(), &old).unwrap()).unwrap();
    let resigned = Bundle::open(&bundle.resign(&new).unwrap()).unwrap();
    resigned.verify(&trust(&[&new])).unwrap();
    assert_eq!(resigned.manifest.signer_key_id, new.key_id());
    assert!(matches!(
        resigned.verify(&trust(&[&old])).unwrap_err(),
        BundleError::Signature(KeyError::UntrustedKey { .. })
    ));

    let mut tampered = bundle.clone();
    tampered.weights[0] ^= 1;
    assert!(matches!(
        tampered.resign(&new).unwrap_err(),
        BundleError::WeightsHash { .. }
    ));
}

#[test]
fn a_bundle_without_signature_is_unsigned() {
    let key = SecretKey::generate();
    let signed = Bundle::open(&pack(&manifest(), &weights(), &key).unwrap()).unwrap();
    let bytes = tar_of(&[
        (MANIFEST_ENTRY, &signed.manifest_bytes),
        (WEIGHTS_FILE, &signed.weights),
    ]);
    let bundle = Bundle::open(&bytes).unwrap();
    assert_eq!(bundle.signature, None);
    let err = bundle.verify(&trust(&[&key])).unwrap_err();
    assert!(matches!(err, BundleError::Unsigned), "{err}");
    assert!(err.to_string().contains("unsigned"), "{err}");
}

#[test]
fn a_manifest_naming_another_signer_is_refused() {
    let key = SecretKey::generate();
    let mut manifest = manifest();
    manifest.signer_key_id = "0123456789abcdef".to_owned();
    let weights = weights();
    manifest.weights.sha256 = sha256_hex(&weights);
    manifest.weights.size = weights.len() as u64;
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let signature = serde_json::to_vec(&key.sign(&manifest_bytes)).unwrap();
    let bytes = tar_of(&[
        (MANIFEST_ENTRY, &manifest_bytes),
        (SIGNATURE_ENTRY, &signature),
        (WEIGHTS_FILE, &weights),
    ]);
    let err = Bundle::open(&bytes)
        .unwrap()
        .verify(&trust(&[&key]))
        .unwrap_err();
    assert!(matches!(err, BundleError::SignerMismatch { .. }), "{err}");
    assert!(err.to_string().contains("0123456789abcdef"), "{err}");
}

#[test]
fn malformed_bundles_are_refused_by_name() {
    let key = SecretKey::generate();
    let signed = Bundle::open(&pack(&manifest(), &weights(), &key).unwrap()).unwrap();
    let m = signed.manifest_bytes.as_slice();
    let s = serde_json::to_vec(signed.signature.as_ref().unwrap()).unwrap();
    let w = signed.weights.as_slice();

    let err = Bundle::open(&tar_of(&[(MANIFEST_ENTRY, m), (SIGNATURE_ENTRY, &s)])).unwrap_err();
    assert!(
        matches!(err, BundleError::MissingEntry { ref name } if name == WEIGHTS_FILE),
        "{err}"
    );

    let err = Bundle::open(&tar_of(&[(WEIGHTS_FILE, w), (MANIFEST_ENTRY, m)])).unwrap_err();
    assert!(matches!(err, BundleError::ManifestNotFirst { .. }), "{err}");

    let err = Bundle::open(&tar_of(&[
        (MANIFEST_ENTRY, m),
        (SIGNATURE_ENTRY, &s),
        (WEIGHTS_FILE, w),
        ("extra.bin", b"x"),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, BundleError::UnexpectedEntry { ref found, .. } if found == "extra.bin"),
        "{err}"
    );

    let err = Bundle::open(&tar_of(&[
        (MANIFEST_ENTRY, m),
        (SIGNATURE_ENTRY, &s),
        (SIGNATURE_ENTRY, &s),
        (WEIGHTS_FILE, w),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, BundleError::DuplicateEntry { ref name } if name == SIGNATURE_ENTRY),
        "{err}"
    );

    let err = Bundle::open(&tar_of(&[
        (MANIFEST_ENTRY, m),
        (WEIGHTS_FILE, w),
        (SIGNATURE_ENTRY, &s),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, BundleError::SignatureAfterWeights { .. }),
        "{err}"
    );

    let err = Bundle::open(&tar_of(&[(
        MANIFEST_ENTRY,
        b"{\"format\": 1, \"name\": 7}",
    )]))
    .unwrap_err();
    assert!(matches!(err, BundleError::InvalidManifest { .. }), "{err}");
    assert!(err.to_string().contains("name"), "{err}");

    let err = Bundle::open(&tar_of(&[(MANIFEST_ENTRY, b"{\"format\": 99}")])).unwrap_err();
    assert!(
        matches!(err, BundleError::UnsupportedFormat { found: 99, .. }),
        "{err}"
    );

    let err = Bundle::open(&tar_of(&[
        (MANIFEST_ENTRY, m),
        (SIGNATURE_ENTRY, b"[]"),
        (WEIGHTS_FILE, w),
    ]))
    .unwrap_err();
    assert!(matches!(err, BundleError::InvalidSignatureFile(_)), "{err}");
}

#[test]
fn a_missing_manifest_field_is_named() {
    let key = SecretKey::generate();
    let signed = Bundle::open(&pack(&manifest(), &weights(), &key).unwrap()).unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&signed.manifest_bytes).unwrap();
    value.as_object_mut().unwrap().remove("created_at");
    let manifest_bytes = serde_json::to_vec_pretty(&value).unwrap();
    let err = Bundle::open(&tar_of(&[(MANIFEST_ENTRY, &manifest_bytes)])).unwrap_err();
    assert!(err.to_string().contains("created_at"), "{err}");
}

#[test]
fn garbage_is_an_error_never_a_panic() {
    let key = SecretKey::generate();
    let good = pack(&manifest(), &weights(), &key).unwrap();
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0; 1024],
        b"not a tar file at all".to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..700].to_vec(),
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for len in [1, 511, 512, 513, 2048, 10_000] {
        let bytes = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        inputs.push(bytes);
    }
    for (i, at) in [0usize, 100, 124, 148, 156, 257, 600]
        .into_iter()
        .enumerate()
    {
        let mut bytes = good.clone();
        bytes[at] ^= 0x5a ^ i as u8;
        inputs.push(bytes);
    }
    for input in &inputs {
        let opened = std::panic::catch_unwind(|| Bundle::open(input));
        let opened = opened.expect("Bundle::open panicked");
        if let Ok(bundle) = opened {
            // Only harmless changes may still open; they must then fail or pass verify cleanly.
            let _ = bundle.verify(&trust(&[&key]));
        }
    }
    assert!(Bundle::open(&[]).is_err());
    assert!(Bundle::open(b"not a tar file at all").is_err());
    assert!(Bundle::open(&good[..good.len() / 2]).is_err());
}

#[test]
fn bundle_files_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let bytes = pack(&manifest(), &weights(), &key).unwrap();
    let path = dir.path().join("rainfall-3.ewb");
    std::fs::write(&path, &bytes).unwrap();
    Bundle::read(&path)
        .unwrap()
        .verify(&trust(&[&key]))
        .unwrap();

    let missing = dir.path().join("missing.ewb");
    let err = Bundle::read(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.ewb"), "{err}");
}

#[test]
fn keys_round_trip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let (secret_path, public_path) = key.save(&dir.path().join("release.v2")).unwrap();
    assert_eq!(secret_path, dir.path().join("release.v2.key"));
    assert_eq!(public_path, dir.path().join("release.v2.pub"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let loaded = SecretKey::load(&secret_path).unwrap();
    assert_eq!(loaded.key_id(), key.key_id());
    assert_eq!(loaded.public_key(), key.public_key());
    let public = PublicKey::load(&public_path).unwrap();
    assert_eq!(public, key.public_key());
    assert_eq!(public.key_id().len(), 16);
    assert!(
        public
            .key_id()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );

    // A signature by the loaded key verifies with the loaded public key.
    let signature = loaded.sign(b"hello");
    public.verify(b"hello", &signature).unwrap();
    assert!(matches!(
        public.verify(b"hellp", &signature).unwrap_err(),
        KeyError::BadSignature { .. }
    ));

    let store = TrustStore::from_files(std::slice::from_ref(&public_path)).unwrap();
    assert_eq!(store.key_ids(), [key.key_id()]);
    assert_eq!(store.verify(b"hello", &signature).unwrap(), key.key_id());

    // Saving again must not overwrite the secret key.
    let err = SecretKey::generate()
        .save(&dir.path().join("release.v2"))
        .unwrap_err();
    assert!(matches!(err, KeyError::Write { .. }), "{err}");
    assert_eq!(
        SecretKey::load(&secret_path).unwrap().key_id(),
        key.key_id()
    );
}

#[test]
fn key_file_formats_are_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let (secret_path, public_path) = key.save(&dir.path().join("k")).unwrap();
    let secret: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&secret_path).unwrap()).unwrap();
    assert_eq!(secret["type"], "edgewise-ed25519-secret-key");
    assert_eq!(secret["key_id"], key.key_id());
    assert_eq!(secret["secret_key"].as_str().unwrap().len(), 44);
    let public: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&public_path).unwrap()).unwrap();
    assert_eq!(public["type"], "edgewise-ed25519-public-key");
    assert_eq!(public["key_id"], key.key_id());
    assert_eq!(public["public_key"].as_str().unwrap().len(), 44);
}

/// Rewrites one field of a JSON key file.
fn edit_key_file(path: &Path, field: &str, value: serde_json::Value) -> PathBuf {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    json[field] = value;
    let edited = path.with_file_name(format!("edited-{field}"));
    std::fs::write(&edited, serde_json::to_vec(&json).unwrap()).unwrap();
    edited
}

#[test]
fn tampered_key_files_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let other = SecretKey::generate();
    let (secret_path, public_path) = key.save(&dir.path().join("k")).unwrap();

    let bad = edit_key_file(&public_path, "key_id", other.key_id().into());
    let err = PublicKey::load(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Field {
                field: "key_id",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`key_id`") && msg.contains("edited-key_id"),
        "{msg}"
    );
    assert!(TrustStore::from_files(&[public_path.clone(), bad]).is_err());

    let bad = edit_key_file(&secret_path, "key_id", other.key_id().into());
    let err = SecretKey::load(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Field {
                field: "key_id",
                ..
            }
        ),
        "{err}"
    );

    let err = SecretKey::load(&public_path).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Json { .. } | KeyError::Field { field: "type", .. }
        ),
        "{err}"
    );

    let bad = edit_key_file(&public_path, "type", "edgewise-ed25519-secret-key".into());
    let err = PublicKey::load(&bad).unwrap_err();
    assert!(
        matches!(err, KeyError::Field { field: "type", .. }),
        "{err}"
    );

    let bad = edit_key_file(&public_path, "public_key", "not base64!".into());
    let err = PublicKey::load(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Field {
                field: "public_key",
                ..
            }
        ),
        "{err}"
    );

    let bad = edit_key_file(&secret_path, "secret_key", "AAAA".into());
    let err = SecretKey::load(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Field {
                field: "secret_key",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("32 bytes"), "{err}");

    let garbage = dir.path().join("garbage.pub");
    std::fs::write(&garbage, b"\x00\xffnot json").unwrap();
    let err = PublicKey::load(&garbage).unwrap_err();
    assert!(matches!(err, KeyError::Json { .. }), "{err}");
    assert!(err.to_string().contains("garbage.pub"), "{err}");
}

#[test]
fn malformed_signatures_are_refused() {
    let key = SecretKey::generate();
    let store = trust(&[&key]);
    let good = key.sign(b"message");
    let cases = [
        DetachedSignature {
            algorithm: "rsa".to_owned(),
            ..good.clone()
        },
        DetachedSignature {
            signature: "@@@".to_owned(),
            ..good.clone()
        },
        DetachedSignature {
            signature: "AAAA".to_owned(),
            ..good.clone()
        },
    ];
    for signature in &cases {
        let err = store.verify(b"message", signature).unwrap_err();
        assert!(matches!(err, KeyError::MalformedSignature(_)), "{err}");
    }
}
