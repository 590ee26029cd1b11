//! The REST API as a client sees it: the registry's rules, and a 4xx JSON error that
//! names the problem for bad input on every endpoint.

mod common;

use common::{ControlPlane, bundles};
use edgewise_core::bundle::{Bundle, sha256_hex};
use edgewise_core::keys::SecretKey;
use reqwest::Method;
use serde_json::{Value, json};

/// Sends a request and asserts a JSON error with `status` whose message holds `needle`.
fn expect_error(
    plane: &ControlPlane,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
    needle: &str,
) {
    let (got, answer) = plane.call(method.clone(), path, body);
    let message = answer["error"].as_str().unwrap_or_default();
    assert_eq!(got, status, "{method} {path}: {answer}");
    assert!(
        message.contains(needle),
        "{method} {path}: error {message:?} should mention {needle:?}"
    );
}

/// Uploads raw bytes as a bundle.
fn push_raw(plane: &ControlPlane, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = plane
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/models/{name}/versions"),
        )
        .body(bytes)
        .send()
        .expect("push");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn registry_rules_and_json_errors_on_every_endpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let v1 = std::fs::read(&bundles().v1).expect("v1");

    // Registry: upload, immutability, listing with metrics and profile, aliases.
    let (status, created) = push_raw(&plane, "digits", v1.clone());
    assert_eq!(status, 201, "{created}");
    assert!(
        created["metrics"]["test_accuracy"]
            .as_f64()
            .expect("accuracy")
            > 0.8
    );
    assert_eq!(created["profile"].as_array().expect("profile").len(), 64);
    assert_eq!(created["lineage"]["rows"], 1797);
    let (status, answer) = push_raw(&plane, "digits", v1.clone());
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("immutable")
    );
    let stranger = Bundle::open(&v1)
        .expect("bundle")
        .resign(&SecretKey::generate())
        .expect("resign");
    let (status, answer) = push_raw(&plane, "digits", stranger);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not trusted"),
        "{answer}"
    );
    let (status, answer) = push_raw(&plane, "other", v1.clone());
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("names model \"digits\""),
        "{answer}"
    );
    let (status, answer) = push_raw(&plane, "digits", b"not a bundle".to_vec());
    assert_eq!(status, 400, "{answer}");
    let (status, _) = push_raw(&plane, "digits", Vec::new());
    assert_eq!(status, 400);

    plane.cli(&["model", "alias", "set", "digits", "champion", "1"]);
    let version = plane.get("/api/v1/models/digits/versions/champion");
    assert_eq!(version["version"], 1);
    assert_eq!(version["aliases"], json!(["champion"]));
    plane.cli(&["model", "alias", "delete", "digits", "champion"]);
    assert_eq!(plane.get("/api/v1/models/digits/aliases"), json!({}));
    let listed = plane.cli(&["model", "show", "digits"]);
    assert!(
        listed.contains("ACCURACY") && listed.contains("digits.csv"),
        "{listed}"
    );

    expect_error(
        &plane,
        Method::GET,
        "/api/v1/models/nope/versions",
        None,
        404,
        "nope",
    );
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/models/digits/versions/9",
        None,
        404,
        "version 9",
    );
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/models/digits/versions/latest-ish",
        None,
        404,
        "latest-ish",
    );
    expect_error(
        &plane,
        Method::PUT,
        "/api/v1/models/digits/aliases/champion",
        Some(json!({"version": "one"})),
        400,
        "version",
    );
    expect_error(
        &plane,
        Method::PUT,
        "/api/v1/models/digits/aliases/champion",
        Some(json!({"version": 7})),
        404,
        "version 7",
    );
    expect_error(
        &plane,
        Method::PUT,
        "/api/v1/models/digits/aliases/42",
        Some(json!({"version": 1})),
        400,
        "number",
    );
    expect_error(
        &plane,
        Method::PUT,
        "/api/v1/models/digits/aliases/a%20b",
        Some(json!({"version": 1})),
        400,
        "alias",
    );
    expect_error(
        &plane,
        Method::DELETE,
        "/api/v1/models/digits/aliases/none",
        None,
        404,
        "none",
    );

    // Fleet.
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "a/b", "group": "g"})),
        400,
        "name",
    );
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "ok"})),
        400,
        "group",
    );
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "ok", "group": "g", "colour": 1})),
        400,
        "colour",
    );
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "edgewise-control-plane", "group": "g"})),
        400,
        "reserved",
    );
    let (status, answer) = plane.call(
        Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "dev-1", "group": "g", "labels": {"canary": "true"}})),
    );
    assert_eq!(status, 201, "{answer}");
    assert!(
        answer["node_config"]
            .as_str()
            .expect("config")
            .contains("ca_certificate")
    );
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/devices",
        Some(json!({"name": "dev-1", "group": "g"})),
        409,
        "already registered",
    );
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/devices/ghost",
        None,
        404,
        "ghost",
    );
    expect_error(
        &plane,
        Method::PUT,
        "/api/v1/devices/dev-1/group",
        Some(json!({"group": "bad group"})),
        400,
        "group",
    );
    expect_error(
        &plane,
        Method::PUT,
        "/api/v1/devices/ghost/group",
        Some(json!({"group": "g2"})),
        404,
        "ghost",
    );
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/groups/none",
        None,
        404,
        "none",
    );
    let (status, text) = plane.call(Method::POST, "/api/v1/devices", None);
    assert_eq!(status, 400, "{text}");

    // Deployments, and deleting an assigned version.
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/deployments",
        Some(json!({"group": "empty", "model": "digits", "version": "1"})),
        404,
        "empty",
    );
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/deployments",
        Some(json!({"group": "g", "model": "nope", "version": "1"})),
        404,
        "nope",
    );
    expect_error(
        &plane,
        Method::POST,
        "/api/v1/deployments",
        Some(json!({"group": "g", "model": "digits"})),
        400,
        "version",
    );
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/deployments/dep-999",
        None,
        404,
        "dep-999",
    );
    plane.deploy("g", "1");
    expect_error(
        &plane,
        Method::DELETE,
        "/api/v1/models/digits/versions/1",
        None,
        409,
        "dev-1",
    );
    let shown = plane.get("/api/v1/devices/dev-1");
    assert_eq!(shown["desired"], "digits:1");
    assert_eq!(shown["labels"]["canary"], "true");

    // Artifacts over HTTP, with Range.
    let sha = sha256_hex(&v1);
    let ranged = plane
        .request(reqwest::Method::GET, &format!("/api/v1/artifacts/{sha}"))
        .header("range", "bytes=100-")
        .send()
        .expect("range GET");
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(ranged.bytes().expect("bytes").as_ref(), &v1[100..]);
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/artifacts/xyz",
        None,
        400,
        "sha256",
    );
    expect_error(
        &plane,
        Method::GET,
        &format!("/api/v1/artifacts/{}", "0".repeat(64)),
        None,
        404,
        "no artifact",
    );
    let beyond = plane
        .request(reqwest::Method::GET, &format!("/api/v1/artifacts/{sha}"))
        .header("range", format!("bytes={}-", v1.len() + 10))
        .send()
        .expect("range GET");
    assert_eq!(beyond.status().as_u16(), 416);

    // The rest of the surface.
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/nothing-here",
        None,
        404,
        "/api/v1/nothing-here",
    );
    expect_error(&plane, Method::PATCH, "/api/v1/devices", None, 405, "PATCH");
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/telemetry/series?model=digits&step_seconds=0",
        None,
        400,
        "step_seconds",
    );
    expect_error(
        &plane,
        Method::GET,
        "/api/v1/telemetry/series?version=1",
        None,
        400,
        "model",
    );
    let openapi = plane.get("/api/v1/openapi.json");
    for path in [
        "/api/v1/devices",
        "/api/v1/deployments",
        "/api/v1/models/{name}/versions",
        "/api/v1/artifacts/{sha256}",
        "/api/v1/telemetry/series",
        "/api/v1/alerts",
    ] {
        assert!(openapi["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    let groups = plane.cli(&["group", "list"]);
    assert!(
        groups.contains("dev-1") && groups.contains("digits:1"),
        "{groups}"
    );
}
