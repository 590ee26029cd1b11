//! Key rotation through signed documents: the deployment key and the release keys are
//! replaced with no moment in which a node refuses a valid update, retired keys stop
//! working everywhere, and a release rotation needs k of n signatures once set so.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::mqtt::Mqtt;
use common::{ControlPlane, Node, bundles, reported, wait_for};
use edgewise_core::assignment::{Assignment, AssignmentMode, SignedAssignment};
use edgewise_core::keys::SecretKey;
use edgewise_core::rotation::{KeyRole, KeyRotation};
use edgewise_core::spec::ModelSpec;
use serde_json::Value;

/// A new key pair saved under `dir`; returns the key and its `.key` and `.pub` paths.
fn new_key(dir: &Path, name: &str) -> (SecretKey, PathBuf, PathBuf) {
    let key = SecretKey::generate();
    let (secret, public) = key.save(&dir.join(name)).expect("save key");
    (key, secret, public)
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `edgewise --json keys show`.
fn keys(plane: &ControlPlane) -> Value {
    serde_json::from_str(&plane.cli(&["--json", "keys", "show"])).expect("keys JSON")
}

/// Waits until `device` serves `version` and reports key set versions `release`/`deployment`.
fn wait_serving(plane: &ControlPlane, node: &Node, device: &str, version: &str, keys: (u64, u64)) {
    wait_for(
        &format!("{device} to serve v{version} with key versions {keys:?}"),
        Duration::from_secs(60),
        || {
            let state = reported(plane, device);
            (node.serving_version().as_deref() == Some(version)
                && state["key_versions"]["release"] == keys.0
                && state["key_versions"]["deployment"] == keys.1)
                .then_some(())
        },
    );
}

/// Publishes `signed` on `device`'s desired topic, as an attacker with broker access would.
fn inject(plane: &ControlPlane, device: &str, signed: &SignedAssignment) {
    let mut mqtt = Mqtt::connect(
        plane.mqtt_address(),
        "test-attacker",
        "edgewise-control-plane",
        &plane.service_password(),
    )
    .expect("connects");
    mqtt.publish(
        &format!("edgewise/v1/devices/{device}/desired"),
        &signed.to_bytes(),
        true,
    );
}

/// Waits until `device` reports a failed update mentioning `needle`.
fn expect_refused(plane: &ControlPlane, device: &str, needle: &str) {
    wait_for(
        &format!("{device} to refuse with {needle:?}"),
        Duration::from_secs(30),
        || {
            let state = reported(plane, device);
            let failure = state["failure"].as_str().unwrap_or_default();
            (state["phase"] == "failed" && failure.contains(needle)).then_some(())
        },
    );
}

#[test]
fn keys_rotate_by_signed_documents_and_no_valid_update_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    for bundle in [&bundles().v1, &bundles().v2] {
        plane.cli(&["model", "push", path(bundle)]);
    }
    let config = plane.add_device("edge-1", "field", dir.path());
    let mut node = Node::start(&config);
    plane.deploy_and_wait("field", "digits", "1");
    wait_serving(&plane, &node, "edge-1", "1", (1, 1));

    // Deployment key: the very next assignment is signed by the new key, and the node
    // takes it at once, because the envelope carries the rotation.
    let retired_deployment = plane.deployment_key();
    let rotated = plane.cli(&["--json", "keys", "rotate-deployment"]);
    let rotated: Value = serde_json::from_str(&rotated).expect("keys JSON");
    assert_eq!(rotated["deployment"]["version"], 2, "{rotated}");
    let current_deployment = plane.deployment_key();
    assert_ne!(current_deployment.key_id(), retired_deployment.key_id());
    assert_eq!(
        rotated["deployment"]["key_ids"][0],
        current_deployment.key_id()
    );
    plane.deploy_and_wait("field", "digits", "2");
    wait_serving(&plane, &node, "edge-1", "2", (1, 2));

    // Release keys, rotated offline: the current key must vouch for the new one.
    let keys_dir = dir.path().join("release-keys");
    std::fs::create_dir_all(&keys_dir).expect("key folder");
    let (new_release, new_secret, new_public) = new_key(&keys_dir, "release-2");
    let old_secret = bundles().dir.join("release.key");
    let unvouched = plane.cli_output(&[
        "keys",
        "rotate-release",
        "--key",
        path(&new_public),
        "--sign-with",
        path(&new_secret),
    ]);
    assert!(!unvouched.status.success());
    let error = String::from_utf8_lossy(&unvouched.stderr);
    assert!(error.contains("by the current keys"), "{error}");
    plane.cli(&[
        "keys",
        "rotate-release",
        "--key",
        path(&new_public),
        "--sign-with",
        path(&old_secret),
        "--sign-with",
        path(&new_secret),
    ]);
    assert_eq!(keys(&plane)["release"]["version"], 2);

    // The registry takes bundles by the new key only; a retired signature cannot be
    // deployed, since nodes would refuse it.
    let digits = || ModelSpec::preset("digits-mlp").expect("preset");
    let v3 = dir.path().join("digits-v3.bundle");
    std::fs::write(&v3, common::train(&new_release, digits(), 3, 1)).expect("v3");
    let v4_old_key = dir.path().join("digits-v4.bundle");
    std::fs::write(
        &v4_old_key,
        common::train(&bundles().release, digits(), 4, 1),
    )
    .expect("v4");
    let refused = plane.cli_output(&["model", "push", path(&v4_old_key)]);
    assert!(
        !refused.status.success(),
        "a retired key's bundle is refused"
    );
    let redeploy = plane.try_deploy("field", "1");
    assert!(!redeploy.status.success());
    let error = String::from_utf8_lossy(&redeploy.stderr);
    assert!(error.contains("retired"), "{error}");
    plane.cli(&["model", "push", path(&v3)]);
    plane.deploy_and_wait("field", "digits", "3");
    wait_serving(&plane, &node, "edge-1", "3", (2, 2));

    // k of n: a set of two keys with threshold 2, its signatures collected offline.
    let (_, third_secret, third_public) = new_key(&keys_dir, "release-3");
    let document = dir.path().join("rotation.json");
    plane.cli(&[
        "keys",
        "rotate-release",
        "--key",
        path(&new_public),
        "--key",
        path(&third_public),
        "--threshold",
        "2",
        "--sign-with",
        path(&new_secret),
        "--out",
        path(&document),
    ]);
    let short = plane.cli_output(&["keys", "publish", path(&document)]);
    assert!(!short.status.success());
    let error = String::from_utf8_lossy(&short.stderr);
    assert!(error.contains("2 needed"), "{error}");
    plane.cli(&[
        "keys",
        "sign",
        path(&document),
        "--with",
        path(&third_secret),
    ]);
    plane.cli(&["keys", "publish", path(&document)]);
    let after = keys(&plane);
    assert_eq!(after["release"]["version"], 3, "{after}");
    assert_eq!(after["release"]["threshold"], 2, "{after}");

    // Everything survives restarts: the control plane keeps signing with the new key,
    // the node keeps trusting it, and a node added now starts from the chain.
    plane.restart();
    node.restart();
    assert_eq!(keys(&plane), after);
    wait_serving(&plane, &node, "edge-1", "3", (2, 2));
    let config_2 = plane.add_device("edge-2", "field", dir.path());
    let node_2 = Node::start(&config_2);
    wait_serving(&plane, &node_2, "edge-2", "3", (3, 2));

    // The retired deployment key, and a rotation nobody vouched for, are refused.
    let seq = reported(&plane, "edge-1")["seq"].as_u64().expect("seq") + 1;
    let sha = plane.get("/api/v1/models/digits/versions/3")["bundle_sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    let (issued_at, expires_at) = Assignment::lifetime(SystemTime::now(), Duration::from_secs(600));
    let forged = Assignment {
        device_id: "edge-1".into(),
        seq,
        model: "digits".into(),
        version: 3,
        bundle_sha256: sha,
        size: 1,
        locations: vec![format!("{}/api/v1/artifacts/x", plane.url)],
        rollout_id: None,
        stage: None,
        mode: AssignmentMode::Active,
        issued_at,
        expires_at,
    };
    inject(&plane, "edge-1", &forged.sign(&retired_deployment));
    expect_refused(&plane, "edge-1", "not trusted");
    let attacker = SecretKey::generate();
    let mut self_vouched = forged.sign(&attacker);
    self_vouched.rotations.push(
        KeyRotation::next(
            KeyRole::Deployment,
            2,
            &[attacker.public_key()],
            1,
            forged.issued_at.clone(),
        )
        .expect("rotation")
        .sign(&[&attacker]),
    );
    inject(&plane, "edge-1", &self_vouched);
    expect_refused(&plane, "edge-1", "key rotation refused");
    assert_eq!(node.infer().as_deref(), Ok("3"), "edge-1 kept serving v3");
}
