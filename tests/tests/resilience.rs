//! Faults with real processes: the control plane killed mid-download and restarted,
//! a node restarted while the control plane is down, and a QUIC server at its
//! connection limit.

mod common;

use std::time::{Duration, Instant};

use common::{ControlPlane, Node, metric_value, start_nodes, text, wait_for, wide_bundle};

#[test]
fn resumes_a_broken_download_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The rate limit makes the wide bundle's transfer take several seconds, time
    // enough to kill a process in the middle.
    let big = wide_bundle(dir.path(), 3);
    let size = std::fs::metadata(&big).expect("bundle").len();

    let mut plane = ControlPlane::start(
        &dir.path().join("control-plane"),
        &["--transfer-rate-limit", "150000"],
    );
    let config = plane.add_device("edge-1", "field", dir.path());
    let mut node = Node::start(&config);
    plane.cli(&["model", "push", big.to_str().expect("utf-8")]);
    let deployment = plane.deploy("field", "3");

    wait_for(
        "a fifth of the bundle to arrive",
        Duration::from_secs(30),
        || (node.partial_bytes() > size / 5).then_some(()),
    );
    plane.kill();
    let held = node.partial_bytes();
    assert!(held < size, "the download finished before the kill");
    std::thread::sleep(Duration::from_millis(500));
    plane.restart();

    wait_for("edge-1 to serve v3", Duration::from_secs(90), || {
        (node.serving_version().as_deref() == Some("3")).then_some(())
    });
    let resent = plane.metric("edgewise_artifact_bytes_served_total");
    assert!(resent > 0.0, "nothing was sent after the restart");
    assert!(
        resent < size as f64,
        "the second attempt sent {resent} bytes; resuming from {held} should send fewer than the full {size}"
    );

    // The registry, the devices and the assignments survived the restart.
    let models = plane.get("/api/v1/models");
    assert_eq!(models[0]["name"], "digits");
    assert_eq!(models[0]["versions"], serde_json::json!([3]));
    let device = plane.get("/api/v1/devices/edge-1");
    assert_eq!(device["group"], "field");
    assert_eq!(device["desired"], "digits:3");
    let status = plane.get(&format!("/api/v1/deployments/{deployment}"));
    assert_eq!(status["devices"][0]["state"], "applied", "{status}");

    // With the control plane down, a restarted node serves its last model at once.
    plane.kill();
    let started = Instant::now();
    node.restart();
    assert_eq!(node.infer().as_deref(), Ok("3"));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "the node took {elapsed:?} to serve its stored model"
    );
}

#[test]
fn a_full_quic_server_refuses_at_once_and_the_rest_download_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    // One QUIC connection at a time, and transfers slow enough (about 4 s) to overlap.
    let big = wide_bundle(dir.path(), 3);
    let plane = ControlPlane::start(
        &dir.path().join("control-plane"),
        &[
            "--transfer-rate-limit",
            "300000",
            "--max-quic-connections",
            "1",
        ],
    );
    let configs: Vec<_> = ["edge-1", "edge-2", "edge-3"]
        .iter()
        .map(|device| plane.add_device(device, "field", dir.path()))
        .collect();
    let nodes = start_nodes(&plane, &configs);
    plane.cli(&["model", "push", big.to_str().expect("utf-8")]);
    plane.deploy("field", "3");

    wait_for("every node to serve v3", Duration::from_secs(120), || {
        nodes
            .iter()
            .all(|node| node.serving_version().as_deref() == Some("3"))
            .then_some(())
    });
    let page = text(&format!("{}/metrics", plane.url));
    assert!(
        metric_value(&page, "edgewise_artifact_quic_refused_total") >= 1.0,
        "no QUIC connection was refused"
    );
    assert!(
        metric_value(
            &page,
            r#"edgewise_artifact_bytes_served_total{transport="http"}"#
        ) > 0.0,
        "the refused nodes did not fall back to HTTP"
    );
}
