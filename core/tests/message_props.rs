//! Property tests for the messages a node and the control plane parse from each other:
//! signed assignment envelopes, telemetry windows, reported states, transfer header
//! lines, node configs and status payloads. Hostile bytes give errors rather than panics, valid values
//! survive a round trip, tampering with signed bytes is caught, and the size limits hold.

mod fixtures;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use edgewise_core::assignment::{
    Assignment, AssignmentError, AssignmentMode, MAX_ASSIGNMENT_BYTES, SignedAssignment,
};
use edgewise_core::capture::{CaptureRecord, LateLabel};
use edgewise_core::keys::{KeyError, SecretKey, TrustStore};
use edgewise_core::node_config::NodeConfig;
use edgewise_core::reported::{MAX_REPORTED_BYTES, ReportedState};
use edgewise_core::telemetry::{FeatureWindow, MAX_WINDOW_BYTES, ShadowWindow, TelemetryWindow};
use edgewise_core::topics::Status;
use edgewise_core::transfer::{
    MAX_HEADER_BYTES, TransferRequest, TransferResponse, decode_line, encode_line,
};
use fixtures::trust;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The deployment key that signs every case's envelope, and a store trusting it.
struct Signer {
    key: SecretKey,
    trust: TrustStore,
}

fn fixture() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let key = SecretKey::generate();
        let trust = trust(&[&key]);
        Signer { key, trust }
    })
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
        "key_versions": {"release": 1, "deployment": 2},
    }))
    .unwrap()
}

/// Pads JSON `bytes` with trailing spaces (still valid JSON) to `total` bytes.
fn pad_to(mut bytes: Vec<u8>, total: usize) -> Vec<u8> {
    assert!(total >= bytes.len());
    bytes.resize(total, b' ');
    bytes
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

/// Checks the parse of a `total`-byte input against `limit`: at or below it, the input
/// parses to `expected`; above it, it is refused with an error naming the limit.
fn check_size_limit<T, E>(
    total: usize,
    limit: usize,
    parsed: Result<T, E>,
    expected: &T,
) -> Result<(), TestCaseError>
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    match parsed {
        Ok(parsed) => {
            prop_assert!(total <= limit);
            prop_assert_eq!(&parsed, expected);
        }
        Err(err) => {
            prop_assert!(total > limit, "{total} bytes refused: {err}");
            let message = err.to_string();
            prop_assert!(message.contains(&limit.to_string()), "{message}");
        }
    }
    Ok(())
}

/// Encodes `value` as a header line followed by `rest`, decodes it back, and checks it
/// is the same value and the same trailing bytes, or refused for its length.
fn check_line_round_trip<T>(value: T, rest: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut wire = encode_line(&value);
    let line = wire.len() - 1;
    wire.extend_from_slice(rest);
    match decode_line::<T>(&wire) {
        Ok((decoded, tail)) => {
            prop_assert!(line <= MAX_HEADER_BYTES);
            prop_assert_eq!(decoded, value);
            prop_assert_eq!(tail, rest);
        }
        Err(err) => {
            prop_assert!(line > MAX_HEADER_BYTES, "refused a {line}-byte line: {err}");
            prop_assert!(err.contains(&MAX_HEADER_BYTES.to_string()), "{err}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

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
        check_line_round_trip(request, &rest)?;
    }

    /// A transfer response line decodes to the same response and the bytes after it, or is refused for length.
    #[test]
    fn transfer_response_round_trip(
        response in transfer_response(),
        rest in vec(any::<u8>(), 0..64),
    ) {
        check_line_round_trip(response, &rest)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A valid envelope padded past 64 KiB is refused with an error naming the limit; at or below it verifies.
    #[test]
    fn assignment_envelope_size_limit(extra in -512i64..4096) {
        let (bytes, assignment, now) = signed_envelope();
        let total = (MAX_ASSIGNMENT_BYTES as i64 + extra) as usize;
        let padded = pad_to(bytes, total);
        let parsed = verify_envelope(&padded, now);
        check_size_limit(total, MAX_ASSIGNMENT_BYTES, parsed, &assignment)?;
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
        let parsed = ReportedState::from_bytes(&padded);
        check_size_limit(total, MAX_REPORTED_BYTES, parsed, &state)?;
    }

    /// Arbitrary bytes as a status payload never panic, and a refusal names what was expected.
    #[test]
    fn status_survives_arbitrary_bytes(bytes in vec(any::<u8>(), 0..256)) {
        match Status::parse(&bytes) {
            Ok(status) => prop_assert_eq!(Status::parse(&status.to_payload()), Ok(status)),
            Err(error) => prop_assert!(error.starts_with("status: expected"), "{}", error),
        }
    }

    /// Every status round-trips, and only an older connection's `offline` is stale.
    #[test]
    fn status_round_trips_and_orders_by_epoch(
        online in any::<bool>(),
        epoch in option::of(any::<u64>()),
        latest in option::of(any::<u64>()),
    ) {
        let status = Status { online, epoch };
        prop_assert_eq!(Status::parse(&status.to_payload()), Ok(status));
        let older = matches!((epoch, latest), (Some(e), Some(l)) if e < l);
        prop_assert_eq!(status.is_stale(latest), !online && older);
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
        let parsed = TelemetryWindow::from_bytes(&padded);
        check_size_limit(total, MAX_WINDOW_BYTES, parsed, &window)?;
    }
}
