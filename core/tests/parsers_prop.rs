//! Property tests for the parsers of outside input: bundles, manifests, signed
//! assignment envelopes, telemetry windows, reported states, transfer header lines and
//! node configs. They check that hostile bytes give errors rather than panics, that
//! valid values survive a round trip, that tampering with signed bytes is caught, and
//! that the documented size limits hold.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use edgewise_core::assignment::{
    Assignment, AssignmentError, AssignmentMode, MAX_ASSIGNMENT_BYTES, SignedAssignment,
};
use edgewise_core::bundle::{
    Bundle, BundleError, MANIFEST_ENTRY, MAX_MANIFEST_BYTES, MAX_WEIGHTS_BYTES, SIGNATURE_ENTRY,
    pack, sha256_hex,
};
use edgewise_core::capture::{CaptureRecord, LateLabel};
use edgewise_core::keys::{KeyError, SecretKey, TrustStore};
use edgewise_core::manifest::{
    Hyperparameters, InputSchema, Lineage, MANIFEST_FORMAT, Manifest, Metrics, Normalization,
    OutputSchema, SelfTest, WeightsRef,
};
use edgewise_core::node_config::NodeConfig;
use edgewise_core::profile::{DataProfile, FeatureProfile};
use edgewise_core::reported::{MAX_REPORTED_BYTES, ReportedState};
use edgewise_core::spec::ModelSpec;
use edgewise_core::telemetry::{FeatureWindow, MAX_WINDOW_BYTES, ShadowWindow, TelemetryWindow};
use edgewise_core::transfer::{
    MAX_HEADER_BYTES, TransferRequest, TransferResponse, decode_line, encode_line,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

const WEIGHTS_FILE: &str = "model.mpk";

// ---------------------------------------------------------------------------
// Helpers (small copies of the ones in bundle_signing.rs).
// ---------------------------------------------------------------------------

/// A small but complete manifest; pack fills in the signer and the weights hash.
fn manifest() -> Manifest {
    let features: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
    Manifest {
        format: MANIFEST_FORMAT,
        name: "rainfall".to_owned(),
        version: 3,
        created_at: "2025-01-02T03:04:05Z".to_owned(),
        spec: ModelSpec::preset("rainfall-mlp").unwrap(),
        input: InputSchema {
            features,
            shape: vec![8],
            datatype: "FP32".to_owned(),
            normalization: Normalization {
                mean: vec![0.5; 8],
                std: vec![2.0; 8],
            },
        },
        output: OutputSchema {
            labels: vec!["dry".to_owned(), "rain".to_owned()],
        },
        weights: WeightsRef {
            file: WEIGHTS_FILE.to_owned(),
            format: "named-mpk".to_owned(),
            sha256: String::new(),
            size: 0,
        },
        profile: DataProfile {
            features: vec![FeatureProfile {
                name: "f0".to_owned(),
                bin_edges: vec![-1.0, 0.0, 1.0],
                reference_frequencies: vec![0.25; 4],
                reference_sample: vec![-1.5, -0.5, 0.5, 1.5],
            }],
            class_frequencies: vec![0.7, 0.3],
        },
        self_test: SelfTest {
            inputs: vec![vec![0.0; 8]],
            expected_probabilities: vec![vec![0.6, 0.4]],
            tolerance: 1e-4,
        },
        lineage: Lineage {
            dataset_sha256: sha256_hex(b"dataset"),
            dataset: "rainfall.csv".to_owned(),
            rows: 1000,
            hyperparameters: Hyperparameters {
                epochs: 20,
                batch_size: 32,
                learning_rate: 1e-3,
                seed: 42,
                patience: 5,
                validation_fraction: 0.15,
                test_fraction: 0.15,
            },
            metrics: Metrics {
                test_accuracy: 0.9,
                macro_f1: 0.88,
                validation_accuracy: 0.91,
                confusion_matrix: vec![vec![90, 10], vec![8, 92]],
                epoch_losses: vec![0.7, 0.4, 0.3],
                best_epoch: 3,
            },
            source_revision: Some("abc123".to_owned()),
            training_job: None,
            parent_version: None,
        },
        signer_key_id: String::new(),
    }
}

fn weights() -> Vec<u8> {
    (0..600u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn trust(keys: &[&SecretKey]) -> TrustStore {
    let mut store = TrustStore::new();
    for key in keys {
        store.add(key.public_key());
    }
    store
}

/// Byte offset and length of each entry's data in a tar, by name.
fn entry_spans(bundle: &[u8]) -> Vec<(String, usize, usize)> {
    let mut archive = tar::Archive::new(bundle);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            (
                name,
                entry.raw_file_position() as usize,
                entry.size() as usize,
            )
        })
        .collect()
}

/// A tar of the given entries, built independently of `pack`.
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
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

/// RFC 3339 text for `secs` after the epoch.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Last second humantime can print: 9999-12-31T23:59:59Z.
const MAX_RFC3339_SECS: u64 = 253_402_300_799;

/// Finite f64s of every magnitude (JSON has no NaN or infinity).
fn finite_f64() -> impl Strategy<Value = f64> {
    use proptest::num::f64;
    f64::POSITIVE | f64::NEGATIVE | f64::NORMAL | f64::SUBNORMAL | f64::ZERO
}

/// Finite f32s of every magnitude.
fn finite_f32() -> impl Strategy<Value = f32> {
    use proptest::num::f32;
    f32::POSITIVE | f32::NEGATIVE | f32::NORMAL | f32::SUBNORMAL | f32::ZERO
}

// ---------------------------------------------------------------------------
// Generators of valid values.
// ---------------------------------------------------------------------------

prop_compose! {
    /// A valid assignment that is live at the returned instant.
    fn live_assignment()(
        device_id in "[A-Za-z0-9_][A-Za-z0-9._-]{0,63}",
        seq in 1..=u64::MAX,
        model in ".{1,40}",
        version in any::<u64>(),
        bundle_sha256 in "[0-9a-f]{64}",
        size in any::<u64>(),
        locations in vec(".{0,60}", 0..4),
        rollout_id in option::of(".{0,30}"),
        stage in option::of(any::<u32>()),
        shadow in any::<bool>(),
        issued in 0..MAX_RFC3339_SECS / 2,
        ttl in 0..MAX_RFC3339_SECS / 2,
    ) -> (Assignment, SystemTime) {
        let assignment = Assignment {
            device_id,
            seq,
            model,
            version,
            bundle_sha256,
            size,
            locations,
            rollout_id,
            stage,
            mode: if shadow { AssignmentMode::Shadow } else { AssignmentMode::Active },
            issued_at: rfc3339(issued),
            expires_at: rfc3339(issued + ttl),
        };
        (assignment, UNIX_EPOCH + Duration::from_secs(issued))
    }
}

fn feature_window(floats: BoxedStrategy<f64>) -> impl Strategy<Value = FeatureWindow> {
    (
        ".{0,12}",
        vec(any::<u64>(), 0..6),
        option::of(floats.clone()),
        option::of(floats.clone()),
        option::of(floats),
    )
        .prop_map(
            |(name, counts, psi, ks_statistic, ks_pvalue)| FeatureWindow {
                name,
                counts,
                psi,
                ks_statistic,
                ks_pvalue,
            },
        )
}

fn capture_record(floats: BoxedStrategy<f32>) -> impl Strategy<Value = CaptureRecord> {
    (
        option::of(".{0,12}"),
        ".{0,12}",
        any::<u64>(),
        ".{0,25}",
        vec(floats, 0..6),
        ".{0,12}",
        option::of(".{0,12}"),
    )
        .prop_map(
            |(id, model, version, captured_at, inputs, prediction, label)| CaptureRecord {
                id,
                model,
                version,
                captured_at,
                inputs,
                prediction,
                label,
            },
        )
}

/// A telemetry window whose floats are drawn from `f64s` and `f32s`.
fn telemetry_window(
    f64s: BoxedStrategy<f64>,
    f32s: BoxedStrategy<f32>,
) -> impl Strategy<Value = TelemetryWindow> {
    let head = (
        ".{0,20}",
        any::<u64>(),
        ".{0,20}",
        any::<u64>(),
        ".{0,25}",
        ".{0,25}",
        any::<[u64; 3]>(),
    );
    let body = (
        vec(any::<u64>(), 0..16),
        vec(f64s.clone(), 0..16),
        vec(any::<[u64; 2]>(), 0..4),
        vec(any::<u64>(), 0..8),
        vec(feature_window(f64s), 0..4),
        any::<[u64; 2]>(),
        option::of(any::<[u64; 3]>()),
        vec(capture_record(f32s), 0..3),
        vec((".{0,12}", ".{0,12}"), 0..3),
    );
    (head, body).prop_map(
        |(
            (
                device_id,
                window_seq,
                model,
                version,
                started_at,
                ended_at,
                [requests, errors, examples],
            ),
            (
                latency_buckets,
                latency_samples,
                batch_sizes,
                class_counts,
                features,
                [labelled, correct],
                shadow,
                captures,
                late_labels,
            ),
        )| TelemetryWindow {
            device_id,
            window_seq,
            model,
            version,
            started_at,
            ended_at,
            requests,
            errors,
            examples,
            latency_buckets,
            latency_samples,
            batch_sizes,
            class_counts,
            features,
            labelled,
            correct,
            shadow: shadow.map(|[version, compared, agreed]| ShadowWindow {
                version,
                compared,
                agreed,
            }),
            captures,
            late_labels: late_labels
                .into_iter()
                .map(|(id, label)| LateLabel { id, label })
                .collect(),
        },
    )
}

/// Floats as the runtime produces them: latencies, PSI, KS and p-values are small
/// numbers with a handful of digits.
fn everyday_f64() -> BoxedStrategy<f64> {
    (0u32..10_000_000, 0i32..8)
        .prop_map(|(mantissa, scale)| f64::from(mantissa) / 10f64.powi(scale))
        .boxed()
}

fn everyday_f32() -> BoxedStrategy<f32> {
    (-100_000i32..100_000)
        .prop_map(|value| value as f32 / 100.0)
        .boxed()
}

fn transfer_request() -> impl Strategy<Value = TransferRequest> {
    (".{0,300}", any::<u64>()).prop_map(|(sha256, offset)| TransferRequest { sha256, offset })
}

fn transfer_response() -> impl Strategy<Value = TransferResponse> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        option::of(".{0,300}"),
    )
        .prop_map(|(ok, size, offset, error)| TransferResponse {
            ok,
            size,
            offset,
            error,
        })
}

/// A valid, signed assignment envelope (its bytes), its trust store, device and time.
fn signed_envelope() -> (Vec<u8>, Assignment, SystemTime) {
    let (issued_at, expires_at) = Assignment::lifetime(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        Duration::from_secs(3600),
    );
    let assignment = Assignment {
        device_id: "node-1".into(),
        seq: 7,
        model: "digits".into(),
        version: 2,
        bundle_sha256: "ab".repeat(32),
        size: 4096,
        locations: vec![
            "quic://127.0.0.1:8701".into(),
            format!("https://cp.example/api/v1/artifacts/{}", "ab".repeat(32)),
        ],
        rollout_id: Some("r-1".into()),
        stage: Some(1),
        mode: AssignmentMode::Active,
        issued_at,
        expires_at,
    };
    let bytes = assignment.sign(&fixture().key).to_bytes();
    (
        bytes,
        assignment,
        UNIX_EPOCH + Duration::from_secs(1_700_000_100),
    )
}

/// Parses and verifies envelope bytes against the fixture's trust store.
fn verify_envelope(bytes: &[u8], now: SystemTime) -> Result<Assignment, AssignmentError> {
    SignedAssignment::from_bytes(bytes)?.verify(&fixture().trust, "node-1", 6, now)
}

fn sample_reported() -> ReportedState {
    serde_json::from_value(serde_json::json!({
        "device_id": "node-1",
        "active": {"model": "digits", "version": 2, "bundle_sha256": "ab".repeat(32)},
        "previous": null,
        "phase": "applied",
        "seq": 7,
        "applied_seq": 7,
        "failure": null,
        "backend": "cpu",
        "adapter": "test",
        "runtime_version": "0.1.0",
        "reported_at": "2025-01-02T03:04:05Z",
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------
// (a) Arbitrary input never panics; it is refused with an error.
// ---------------------------------------------------------------------------

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

    /// Arbitrary bytes as an assignment envelope are refused by parse or verify, never a panic.
    #[test]
    fn assignment_envelope_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        let now = SystemTime::now();
        if let Ok(signed) = SignedAssignment::from_bytes(&bytes) {
            prop_assert!(signed.open(&fixture().trust).is_err());
            prop_assert!(signed.verify(&fixture().trust, "node-1", 0, now).is_err());
        }
    }

    /// A well-formed envelope with arbitrary payload and signature fields is refused by verify, never a panic.
    #[test]
    fn assignment_envelope_survives_arbitrary_fields(
        payload in prop_oneof![".{0,200}", vec(any::<u8>(), 0..200).prop_map(|b| BASE64.encode(b))],
        algorithm in prop_oneof![Just("ed25519".to_owned()), ".{0,10}"],
        key_id in prop_oneof![Just(fixture().key.key_id().to_owned()), ".{0,20}"],
        signature in prop_oneof![".{0,100}", vec(any::<u8>(), 0..80).prop_map(|b| BASE64.encode(b))],
    ) {
        let envelope = serde_json::json!({
            "payload": payload,
            "signature": {"algorithm": algorithm, "key_id": key_id, "signature": signature},
        });
        let signed = SignedAssignment::from_bytes(&serde_json::to_vec(&envelope).unwrap());
        let signed = signed.expect("a well-formed envelope parses");
        prop_assert!(signed.verify(&fixture().trust, "node-1", 0, SystemTime::now()).is_err());
    }

    /// Arbitrary bytes parsed as a telemetry window or a reported state give an error, never a panic.
    #[test]
    fn telemetry_and_reported_survive_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        prop_assert!(TelemetryWindow::from_bytes(&bytes).is_err());
        prop_assert!(ReportedState::from_bytes(&bytes).is_err());
    }

    /// Arbitrary bytes as a transfer header never panic; a success means a short first line.
    #[test]
    fn transfer_header_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        let newline = bytes.iter().position(|&b| b == b'\n');
        let decoded = [
            decode_line::<TransferRequest>(&bytes).map(|(_, rest)| rest),
            decode_line::<TransferResponse>(&bytes).map(|(_, rest)| rest),
        ];
        for rest in decoded.into_iter().flatten() {
            let end = newline.expect("a header line ends in a newline");
            prop_assert!(end <= MAX_HEADER_BYTES);
            prop_assert_eq!(rest, &bytes[end + 1..]);
        }
    }

    /// Arbitrary text as a node config gives an error, never a panic.
    #[test]
    fn node_config_survives_arbitrary_text(text in ".{0,512}") {
        prop_assert!(NodeConfig::from_toml(&text).is_err());
    }
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

// ---------------------------------------------------------------------------
// (b) Round trips.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// An assignment signed with a fresh key parses and verifies back to the same assignment.
    #[test]
    fn assignment_sign_verify_round_trip((assignment, now) in live_assignment()) {
        let key = SecretKey::generate();
        let trust = trust(&[&key]);
        let signed = assignment.sign(&key);
        let bytes = signed.to_bytes();
        prop_assert!(bytes.len() <= MAX_ASSIGNMENT_BYTES);
        let parsed = SignedAssignment::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&parsed, &signed);
        let verified = parsed
            .verify(&trust, &assignment.device_id, assignment.seq - 1, now)
            .unwrap();
        prop_assert_eq!(&verified, &assignment);
        // The same envelope is refused by a store that trusts only another key.
        let stranger = trust_of_other_key();
        let refused = parsed.verify(&stranger, &assignment.device_id, 0, now);
        prop_assert!(
            matches!(refused, Err(AssignmentError::Signature(KeyError::UntrustedKey { .. }))),
            "{:?}",
            refused
        );
    }

    /// A telemetry window with everyday float values encodes to JSON and decodes to an equal window.
    #[test]
    fn telemetry_window_round_trip(window in telemetry_window(everyday_f64(), everyday_f32())) {
        let bytes = serde_json::to_vec(&window).unwrap();
        prop_assert!(bytes.len() <= MAX_WINDOW_BYTES);
        prop_assert_eq!(TelemetryWindow::from_bytes(&bytes).unwrap(), window);
    }

    /// A telemetry window with floats of any finite magnitude decodes exactly, except f64s within a few ulps.
    #[test]
    fn telemetry_window_round_trip_any_float(
        window in telemetry_window(finite_f64().boxed(), finite_f32().boxed())
    ) {
        let bytes = serde_json::to_vec(&window).unwrap();
        let decoded = TelemetryWindow::from_bytes(&bytes).unwrap();
        // serde_json without its `float_roundtrip` feature parses f64s best-effort:
        // about 30% of random bit patterns come back 1 or 2 ulps off. f32s and
        // everything else must match exactly.
        let strip = |w: &TelemetryWindow| {
            let mut w = w.clone();
            w.latency_samples.clear();
            for f in &mut w.features {
                (f.psi, f.ks_statistic, f.ks_pvalue) = (None, None, None);
            }
            w
        };
        prop_assert_eq!(strip(&decoded), strip(&window));
        let f64s = |w: &TelemetryWindow| -> Vec<f64> {
            let mut all = w.latency_samples.clone();
            for f in &w.features {
                all.extend([f.psi, f.ks_statistic, f.ks_pvalue].into_iter().flatten());
            }
            all
        };
        let (got, want) = (f64s(&decoded), f64s(&window));
        prop_assert_eq!(got.len(), want.len());
        for (got, want) in got.into_iter().zip(want) {
            prop_assert!(ulps_apart(got, want) <= 4, "{:e} decoded as {:e}", want, got);
        }
    }

    /// A transfer request line decodes to the same request and the bytes after it, or is refused for length.
    #[test]
    fn transfer_request_round_trip(
        request in transfer_request(),
        rest in vec(any::<u8>(), 0..64),
    ) {
        let mut wire = encode_line(&request);
        let line = wire.len() - 1;
        wire.extend_from_slice(&rest);
        match decode_line::<TransferRequest>(&wire) {
            Ok((decoded, tail)) => {
                prop_assert!(line <= MAX_HEADER_BYTES);
                prop_assert_eq!(decoded, request);
                prop_assert_eq!(tail, rest.as_slice());
            }
            Err(err) => {
                prop_assert!(line > MAX_HEADER_BYTES, "refused a {line}-byte line: {err}");
                prop_assert!(err.contains(&MAX_HEADER_BYTES.to_string()), "{err}");
            }
        }
    }

    /// A transfer response line decodes to the same response and the bytes after it, or is refused for length.
    #[test]
    fn transfer_response_round_trip(
        response in transfer_response(),
        rest in vec(any::<u8>(), 0..64),
    ) {
        let mut wire = encode_line(&response);
        let line = wire.len() - 1;
        wire.extend_from_slice(&rest);
        match decode_line::<TransferResponse>(&wire) {
            Ok((decoded, tail)) => {
                prop_assert!(line <= MAX_HEADER_BYTES);
                prop_assert_eq!(decoded, response);
                prop_assert_eq!(tail, rest.as_slice());
            }
            Err(err) => {
                prop_assert!(line > MAX_HEADER_BYTES, "refused a {line}-byte line: {err}");
                prop_assert!(err.contains(&MAX_HEADER_BYTES.to_string()), "{err}");
            }
        }
    }
}

fn trust_of_other_key() -> TrustStore {
    trust(&[&SecretKey::generate()])
}

/// Distance in units in the last place between two finite f64s.
fn ulps_apart(a: f64, b: f64) -> u64 {
    if a == b {
        0
    } else if a.is_sign_negative() != b.is_sign_negative() {
        u64::MAX
    } else {
        a.to_bits().abs_diff(b.to_bits())
    }
}

// ---------------------------------------------------------------------------
// (c) Mutations of signed bytes.
// ---------------------------------------------------------------------------

/// Where in the fixture bundle a flip can land: the data of one entry, or anywhere.
fn span(name: Option<&str>) -> (usize, usize) {
    let bundle = &fixture().bundle;
    match name {
        None => (0, bundle.len()),
        Some(name) => entry_spans(bundle)
            .into_iter()
            .find(|(entry, _, _)| entry == name)
            .map(|(_, start, len)| (start, len))
            .unwrap(),
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

    /// Flipping any byte of a signed assignment envelope makes parse or verify fail.
    #[test]
    fn assignment_envelope_flip_fails_verification(
        at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (mut bytes, _, now) = signed_envelope();
        let index = at.index(bytes.len());
        bytes[index] ^= mask;
        prop_assert!(verify_envelope(&bytes, now).is_err(), "flip {mask:#04x} at {index} accepted");
    }

    /// Flipping any byte of the decoded assignment payload makes verification fail on the signature.
    #[test]
    fn assignment_payload_flip_fails_signature(
        at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (bytes, _, now) = signed_envelope();
        let mut signed = SignedAssignment::from_bytes(&bytes).unwrap();
        let mut payload = BASE64.decode(&signed.payload).unwrap();
        let index = at.index(payload.len());
        payload[index] ^= mask;
        signed.payload = BASE64.encode(payload);
        let refused = signed.verify(&fixture().trust, "node-1", 6, now);
        prop_assert!(
            matches!(refused, Err(AssignmentError::Signature(KeyError::BadSignature { .. }))),
            "{:?}",
            refused
        );
    }
}

// ---------------------------------------------------------------------------
// (d) Size limits.
// ---------------------------------------------------------------------------

/// Pads JSON `bytes` with trailing spaces (still valid JSON) to `total` bytes.
fn pad_to(mut bytes: Vec<u8>, total: usize) -> Vec<u8> {
    assert!(total >= bytes.len());
    bytes.resize(total, b' ');
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A valid envelope padded past 16 KiB is refused with an error naming the limit; at or below it verifies.
    #[test]
    fn assignment_envelope_size_limit(extra in -512i64..4096) {
        let (bytes, assignment, now) = signed_envelope();
        let total = (MAX_ASSIGNMENT_BYTES as i64 + extra) as usize;
        let padded = pad_to(bytes, total);
        match verify_envelope(&padded, now) {
            Ok(verified) => {
                prop_assert!(total <= MAX_ASSIGNMENT_BYTES);
                prop_assert_eq!(verified, assignment);
            }
            Err(err) => {
                prop_assert!(total > MAX_ASSIGNMENT_BYTES, "{total} bytes refused: {err}");
                let message = err.to_string();
                prop_assert!(message.contains(&MAX_ASSIGNMENT_BYTES.to_string()), "{message}");
            }
        }
    }

    /// A header line longer than 1 KiB is refused with an error naming the limit; at or below it decodes.
    #[test]
    fn transfer_header_size_limit(line in 128usize..4096) {
        let request = TransferRequest { sha256: "ab".repeat(32), offset: 9 };
        let mut wire = encode_line(&request);
        wire.pop();
        let mut wire = pad_to(wire, line);
        wire.extend_from_slice(b"\nbody");
        match decode_line::<TransferRequest>(&wire) {
            Ok((decoded, rest)) => {
                prop_assert!(line <= MAX_HEADER_BYTES);
                prop_assert_eq!(decoded, request);
                prop_assert_eq!(rest, b"body");
            }
            Err(err) => {
                prop_assert!(line > MAX_HEADER_BYTES, "{line}-byte line refused: {err}");
                prop_assert!(err.contains(&MAX_HEADER_BYTES.to_string()), "{err}");
            }
        }
    }

    /// A reported state padded past 16 KiB is refused with an error naming the limit; at or below it parses.
    #[test]
    fn reported_state_size_limit(extra in -512i64..4096) {
        let state = sample_reported();
        let total = (MAX_REPORTED_BYTES as i64 + extra) as usize;
        let padded = pad_to(serde_json::to_vec(&state).unwrap(), total);
        match ReportedState::from_bytes(&padded) {
            Ok(parsed) => {
                prop_assert!(total <= MAX_REPORTED_BYTES);
                prop_assert_eq!(parsed, state);
            }
            Err(err) => {
                prop_assert!(total > MAX_REPORTED_BYTES, "{total} bytes refused: {err}");
                prop_assert!(err.contains(&MAX_REPORTED_BYTES.to_string()), "{err}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A telemetry window padded past 512 KiB is refused with an error naming the limit; at or below it parses.
    #[test]
    fn telemetry_window_size_limit(
        window in telemetry_window(everyday_f64(), everyday_f32()),
        extra in -4096i64..4096,
    ) {
        let total = (MAX_WINDOW_BYTES as i64 + extra) as usize;
        let padded = pad_to(serde_json::to_vec(&window).unwrap(), total);
        match TelemetryWindow::from_bytes(&padded) {
            Ok(parsed) => {
                prop_assert!(total <= MAX_WINDOW_BYTES);
                prop_assert_eq!(parsed, window);
            }
            Err(err) => {
                prop_assert!(total > MAX_WINDOW_BYTES, "{total} bytes refused: {err}");
                prop_assert!(err.contains(&MAX_WINDOW_BYTES.to_string()), "{err}");
            }
        }
    }

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
