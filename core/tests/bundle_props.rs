//! Property tests for bundle and manifest parsing, as a node meets a bundle from the
//! network or its disk: hostile bytes give errors rather than panics, tampering with
//! signed bytes is caught, and the size limits hold before anything is read.

mod fixtures;

use std::sync::OnceLock;

use edgewise_core::bundle::{
    Bundle, BundleError, MANIFEST_ENTRY, MAX_MANIFEST_BYTES, MAX_WEIGHTS_BYTES, SIGNATURE_ENTRY,
    pack,
};
use edgewise_core::keys::{SecretKey, TrustStore};
use fixtures::{WEIGHTS_FILE, manifest, span_of, tar_of, trust, weights};
use proptest::collection::vec;
use proptest::prelude::*;

/// One signing key, its trust store and a bundle it signed, shared by every case.
struct Fixture {
    key: SecretKey,
    trust: TrustStore,
    bundle: Vec<u8>,
    opened: Bundle,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SecretKey::generate();
        let trust = trust(&[&key]);
        let bundle = pack(&manifest(), &weights(), &key).unwrap();
        let opened = Bundle::open(&bundle).unwrap();
        opened.verify(&trust).unwrap();
        Fixture {
            key,
            trust,
            bundle,
            opened,
        }
    })
}

/// Opens and verifies `bytes` as a bundle against the fixture's trust store.
fn open_and_verify(bytes: &[u8]) -> Result<Bundle, BundleError> {
    let bundle = Bundle::open(bytes)?;
    bundle.verify(&fixture().trust)?;
    Ok(bundle)
}

/// A tar header block for a regular file `name` that claims `size` bytes.
fn header_block(name: &str, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// Where in the fixture bundle a flip can land: the data of one entry, or anywhere.
fn span(name: Option<&str>) -> (usize, usize) {
    let bundle = &fixture().bundle;
    name.map_or((0, bundle.len()), |name| span_of(bundle, name))
}

/// Tar-shaped input: entries with chosen or random names, types and data.
fn tar_entries() -> impl Strategy<Value = Vec<(String, u8, Vec<u8>)>> {
    let name = prop_oneof![
        Just(MANIFEST_ENTRY.to_owned()),
        Just(SIGNATURE_ENTRY.to_owned()),
        Just(WEIGHTS_FILE.to_owned()),
        "[a-z./]{1,20}",
    ];
    let kind = prop_oneof![Just(b'0'), Just(b'0'), any::<u8>()];
    vec((name, kind, vec(any::<u8>(), 0..600)), 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Arbitrary bytes opened as a bundle give an error (or a bundle that then fails verification), never a panic.
    #[test]
    fn bundle_open_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4096)) {
        prop_assert!(open_and_verify(&bytes).is_err());
    }

    /// Arbitrary bytes as the manifest.json entry of a well-formed tar are refused, never a panic.
    #[test]
    fn manifest_entry_survives_arbitrary_bytes(manifest in vec(any::<u8>(), 0..2048)) {
        let bytes = tar_of(&[
            (MANIFEST_ENTRY, &manifest),
            (SIGNATURE_ENTRY, b"{}"),
            (WEIGHTS_FILE, b"weights"),
        ]);
        prop_assert!(open_and_verify(&bytes).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Structured tar archives with arbitrary names, entry types and data are refused, never a panic.
    #[test]
    fn bundle_open_survives_tar_shaped_input(entries in tar_entries()) {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in &entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::new(*kind));
            header.set_size(data.len() as u64);
            // The tar writer refuses some names (`..`, absolute paths); leave those out.
            let _ = builder.append_data(&mut header, name, data.as_slice());
        }
        let bytes = builder.into_inner().unwrap();
        prop_assert!(open_and_verify(&bytes).is_err());
    }

    /// A valid bundle cut short anywhere is refused, or (when only the end-of-archive blocks go) opens unchanged.
    #[test]
    fn truncated_bundle_is_refused(cut in any::<proptest::sample::Index>()) {
        let fixture = fixture();
        let bytes = &fixture.bundle[..cut.index(fixture.bundle.len())];
        if let Ok(bundle) = open_and_verify(bytes) {
            prop_assert_eq!(&bundle, &fixture.opened);
        }
    }

    /// A manifest signed by a trusted key but with absurd shapes is refused by verify, never a panic.
    #[test]
    fn signed_manifest_with_absurd_shapes_is_refused(
        input_shape in vec(prop_oneof![1usize..16, Just(usize::MAX / 2), any::<usize>()], 3),
        padding in prop_oneof![Just([0usize, 0]), any::<[usize; 2]>()],
        flatten_first in any::<bool>(),
    ) {
        let mut manifest = manifest();
        manifest.spec.input_shape = input_shape;
        let conv = edgewise_core::spec::LayerSpec::Conv2d {
            out_channels: 1,
            kernel_size: [1, 1],
            stride: [1, 1],
            padding,
        };
        manifest.spec.layers = if flatten_first {
            vec![edgewise_core::spec::LayerSpec::Flatten]
        } else {
            vec![conv, edgewise_core::spec::LayerSpec::Flatten]
        };
        let bytes = pack(&manifest, &weights(), &fixture().key).unwrap();
        prop_assert!(open_and_verify(&bytes).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Flipping any byte of the signed manifest.json or the weights makes open or verify fail.
    #[test]
    fn bundle_flip_in_signed_bytes_fails_verification(
        weights_entry in any::<bool>(),
        at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (start, len) = span(Some(if weights_entry { WEIGHTS_FILE } else { MANIFEST_ENTRY }));
        let mut bytes = fixture().bundle.clone();
        bytes[start + at.index(len)] ^= mask;
        prop_assert!(open_and_verify(&bytes).is_err());
    }

    /// Flipping any byte anywhere in a signed bundle is refused, or opens to the very same bundle.
    #[test]
    fn bundle_flip_anywhere_is_refused_or_irrelevant(
        at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (_, len) = span(None);
        let mut bytes = fixture().bundle.clone();
        bytes[at.index(len)] ^= mask;
        if let Ok(bundle) = open_and_verify(&bytes) {
            prop_assert_eq!(&bundle, &fixture().opened);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A manifest.json entry claiming more than 16 MiB is refused, naming the limit, before it is read.
    #[test]
    fn bundle_manifest_entry_size_limit(size in MAX_MANIFEST_BYTES + 1..=u64::MAX / 2) {
        let mut bytes = header_block(MANIFEST_ENTRY, size);
        bytes.extend_from_slice(&[b'{'; 1024]);
        let err = Bundle::open(&bytes).unwrap_err();
        prop_assert!(
            matches!(err, BundleError::TooLarge { limit: MAX_MANIFEST_BYTES, .. }),
            "{err}"
        );
        prop_assert!(err.to_string().contains(&MAX_MANIFEST_BYTES.to_string()));
    }

    /// A weights entry claiming more than 1 GiB is refused, naming the limit, before it is read.
    #[test]
    fn bundle_weights_entry_size_limit(size in MAX_WEIGHTS_BYTES + 1..=u64::MAX / 2) {
        let bundle = &fixture().bundle;
        let (start, _) = span(Some(WEIGHTS_FILE));
        // Keep manifest.json and manifest.sig, replace the weights header.
        let mut bytes = bundle[..start - 512].to_vec();
        bytes.extend_from_slice(&header_block(WEIGHTS_FILE, size));
        bytes.extend_from_slice(&[0x55; 1024]);
        let err = Bundle::open(&bytes).unwrap_err();
        prop_assert!(
            matches!(err, BundleError::TooLarge { limit: MAX_WEIGHTS_BYTES, .. }),
            "{err}"
        );
        prop_assert!(err.to_string().contains(&MAX_WEIGHTS_BYTES.to_string()));
    }
}
