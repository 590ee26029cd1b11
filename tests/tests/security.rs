//! Who gets in: API tokens and their roles, the audit log, and device identity (client
//! certificates on QUIC, credentials on the HTTP fallback and MQTT, revocation).

mod common;

use std::time::Duration;

use common::mqtt::Mqtt;
use common::{ControlPlane, Node, bundles, password_of, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

/// Creates a token with `role` through the CLI; returns it.
fn token(plane: &ControlPlane, name: &str, role: &str) -> String {
    plane
        .cli(&["token", "create", name, "--role", role])
        .trim()
        .to_owned()
}

/// One call with `token` (none: no header); returns the status and JSON answer.
fn call_as(
    plane: &ControlPlane,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request =
        reqwest::blocking::Client::new().request(method, format!("{}{path}", plane.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    common::answer(request)
}

#[test]
fn tokens_limit_each_role_and_every_change_is_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let viewer = token(&plane, "dashboard", "viewer");
    let ci = token(&plane, "release-pipeline", "ci");
    let operator = token(&plane, "on-call", "operator");

    // No token, or a wrong one: 401 with a JSON error; health stays open.
    let (status, body) = call_as(&plane, None, Method::GET, "/api/v1/devices", None);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("Bearer")),
        "{body}"
    );
    assert_eq!(
        call_as(
            &plane,
            Some("ewt_guess"),
            Method::GET,
            "/api/v1/devices",
            None
        )
        .0,
        401
    );
    assert_eq!(
        call_as(&plane, None, Method::GET, "/api/v1/health", None).0,
        200
    );
    let anonymous = call_as(
        &plane,
        None,
        Method::POST,
        "/api/v1/devices",
        Some(json!({ "name": "x", "group": "g" })),
    );
    assert_eq!(anonymous.0, 401);

    // A viewer reads, and changes nothing.
    assert_eq!(
        call_as(&plane, Some(&viewer), Method::GET, "/api/v1/models", None).0,
        200
    );
    let (status, body) = call_as(
        &plane,
        Some(&viewer),
        Method::POST,
        "/api/v1/devices",
        Some(json!({ "name": "d-1", "group": "g" })),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("viewer")),
        "{body}"
    );

    // ci pushes versions and deploys, but manages no devices and no tokens.
    let push = plane.cli_output_as(
        &ci,
        &["model", "push", bundles().v1.to_str().expect("utf-8")],
    );
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    let refused = plane.cli_output_as(
        &ci,
        &["device", "add", "d-1", "--group", "g", "--out", "/dev/null"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("role ci"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        call_as(
            &plane,
            Some(&ci),
            Method::POST,
            "/api/v1/tokens",
            Some(json!({ "name": "x", "role": "admin" }))
        )
        .0,
        403
    );

    // An operator manages devices, not tokens.
    let config = dir.path().join("d-1.toml");
    let added = plane.cli_output_as(
        &operator,
        &[
            "device",
            "add",
            "d-1",
            "--group",
            "g",
            "--out",
            config.to_str().expect("utf-8"),
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(
        call_as(&plane, Some(&operator), Method::GET, "/api/v1/tokens", None).0,
        403
    );
    let deployed = plane.cli_output_as(
        &ci,
        &[
            "deploy",
            "--group",
            "g",
            "--model",
            "digits",
            "--version",
            "1",
        ],
    );
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );

    // Tokens are stored hashed: the store holds no token in plain text.
    let store_bytes: Vec<u8> = std::fs::read_dir(plane.data_dir.join("store"))
        .expect("store")
        .flatten()
        .filter(|e| e.path().is_file())
        .flat_map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect();
    for secret in [&ci, &viewer, &operator, &plane.token] {
        let needle = secret.as_bytes();
        assert!(
            !store_bytes.windows(needle.len()).any(|w| w == needle),
            "a token is stored in plain text"
        );
    }

    // Revoked: refused from the next call on.
    plane.cli(&["token", "revoke", "release-pipeline"]);
    assert_eq!(
        call_as(&plane, Some(&ci), Method::GET, "/api/v1/models", None).0,
        401
    );

    // The audit log names the token behind every change, refused ones included.
    let audit: Vec<Value> =
        serde_json::from_str(&plane.cli(&["--json", "audit", "--limit", "100"]))
            .expect("audit JSON");
    let has = |actor: &str, method: &str, path: &str, status: u64| {
        audit.iter().any(|line| {
            line["actor"] == actor
                && line["method"] == method
                && line["path"] == path
                && line["status"] == status
        })
    };
    assert!(
        has(
            "release-pipeline",
            "POST",
            "/api/v1/models/digits/versions",
            201
        ),
        "{audit:#?}"
    );
    assert!(
        has("release-pipeline", "POST", "/api/v1/devices", 403),
        "{audit:#?}"
    );
    assert!(has("on-call", "POST", "/api/v1/devices", 201), "{audit:#?}");
    assert!(
        has("release-pipeline", "POST", "/api/v1/deployments", 201),
        "{audit:#?}"
    );
    assert!(
        has("admin", "DELETE", "/api/v1/tokens/release-pipeline", 200),
        "{audit:#?}"
    );
    assert!(has("-", "POST", "/api/v1/devices", 401), "{audit:#?}");
    assert!(
        !audit.iter().any(|line| line["method"] == "GET"),
        "reads are not audited"
    );
}

#[test]
fn devices_prove_who_they_are_get_only_their_bundle_and_can_be_revoked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    for bundle in [&bundles().v1, &bundles().v2] {
        plane.cli(&["model", "push", bundle.to_str().expect("utf-8")]);
    }
    let config_1 = plane.add_device("edge-1", "field", dir.path());
    let config_2 = plane.add_device("edge-2", "lab", dir.path());
    let text = std::fs::read_to_string(&config_1).expect("config");
    assert!(
        text.contains("client_certificate"),
        "device add issued a client certificate"
    );

    // Over QUIC with its certificate: the node gets its assigned bundle.
    let node = Node::start(&config_1);
    plane.deploy("field", "1");
    wait_for("edge-1 to serve v1", Duration::from_secs(60), || {
        (node.serving_version().as_deref() == Some("1")).then_some(())
    });
    let page = common::text(&format!("{}/metrics", plane.url));
    assert!(
        page.contains("edgewise_artifact_bytes_served_total{transport=\"quic\"}"),
        "served over QUIC"
    );

    // Over HTTP with device credentials: only the current assignment's bundle.
    let sha = |version: &str| {
        plane.get(&format!("/api/v1/models/digits/versions/{version}"))["bundle_sha256"]
            .as_str()
            .expect("sha256")
            .to_owned()
    };
    let fetch = |device: &str, password: &str, sha: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/artifacts/{sha}", plane.url))
            .basic_auth(device, Some(password))
            .send()
            .expect("GET")
            .status()
            .as_u16()
    };
    let password_1 = password_of(&config_1);
    assert_eq!(fetch("edge-1", &password_1, &sha("1")), 200);
    assert_eq!(
        fetch("edge-1", &password_1, &sha("2")),
        403,
        "not assigned to edge-1"
    );
    assert_eq!(
        fetch("edge-2", &password_of(&config_2), &sha("1")),
        403,
        "edge-2 has no assignment"
    );
    assert_eq!(fetch("edge-1", "wrong", &sha("1")), 401);

    // Revoked: MQTT login, HTTP downloads and new assignments all stop.
    let address = plane.mqtt_address();
    assert!(Mqtt::connect(address, "edge-2", "edge-2", &password_of(&config_2)).is_ok());
    plane.cli(&["device", "revoke", "edge-1"]);
    assert!(
        Mqtt::connect(address, "edge-1", "edge-1", &password_1).is_err(),
        "a revoked device cannot log in to the broker"
    );
    assert_eq!(fetch("edge-1", &password_1, &sha("1")), 401);
    let device = plane.get("/api/v1/devices/edge-1");
    assert!(device["revoked_at"].is_string(), "{device}");
    let seq_before = device["desired_seq"].clone();
    let refused = plane.try_deploy("field", "2");
    assert!(
        !refused.status.success(),
        "the group's only device is revoked"
    );
    assert_eq!(
        plane.get("/api/v1/devices/edge-1")["desired_seq"],
        seq_before,
        "a revoked device gets no new assignment"
    );
    assert_eq!(
        node.infer().as_deref(),
        Ok("1"),
        "the node itself keeps serving what it has"
    );
}
