//! Fault injection on a node, with real processes: `kill -9` during the download, the
//! verification and the activation of an update; a corrupted bundle on its disk; a full
//! disk. After each, the node serves a good model, and what it reports is true.
//!
//! The verification and activation faults hold the node at that step with a fail point
//! (`FAILPOINTS=agent::verify=return(MS)`), then kill it there.

mod common;

use std::time::Duration;

use common::{ControlPlane, Node, bundles, reported, wait_for, wide_bundle};
use serde_json::Value;

/// Waits until the node serves `version` and the control plane's copy of its report
/// says the same, with no update under way and no failure.
fn settles_on(plane: &ControlPlane, node: &Node, version: u64) {
    wait_for(
        &format!("edge-1 to serve v{version} and report it"),
        Duration::from_secs(90),
        || {
            let state = reported(plane, "edge-1");
            let truthful = state["active"]["version"] == version
                && (state["phase"] == "applied" || state["phase"] == "idle")
                && state["failure"].is_null();
            (node.serving_version() == Some(version.to_string()) && truthful).then_some(())
        },
    );
    assert_eq!(
        node.infer().as_deref(),
        Ok(version.to_string().as_str()),
        "inference answers"
    );
}

/// Restarts the node with `failpoints` (or none).
fn restart_with(node: &mut Node, failpoints: Option<&str>) {
    node.env = failpoints
        .map(|f| vec![("FAILPOINTS".to_owned(), f.to_owned())])
        .unwrap_or_default();
    node.restart();
}

fn phase(plane: &ControlPlane) -> Value {
    reported(plane, "edge-1")["phase"].clone()
}

#[test]
fn a_node_recovers_from_kills_corruption_and_a_full_disk_in_the_middle_of_updates() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The rate limit makes the wide bundle's transfer take several seconds, time
    // enough to kill a process in the middle.
    let big = wide_bundle(dir.path(), 3);
    let plane = ControlPlane::start(
        &dir.path().join("control-plane"),
        &["--transfer-rate-limit", "150000"],
    );
    let config = plane.add_device("edge-1", "field", dir.path());
    let mut node = Node::start(&config);
    for bundle in [&bundles().v1, &big] {
        plane.cli(&["model", "push", bundle.to_str().expect("utf-8")]);
    }
    plane.deploy("field", "1");
    settles_on(&plane, &node, 1);

    // 1. Killed during the download: after the restart it serves v1, resumes the
    //    transfer from its partial file and finishes the update.
    plane.deploy("field", "3");
    wait_for("part of v2 to arrive", Duration::from_secs(30), || {
        (node.partial_bytes() > 0).then_some(())
    });
    node.kill();
    assert!(
        node.data_dir
            .join("downloads")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "the kill left a partial download"
    );
    node.restart();
    settles_on(&plane, &node, 3);

    // 2. Killed during verification (v1's bundle is still on disk, so no download).
    restart_with(&mut node, Some("agent::verify=return(120000)"));
    plane.deploy("field", "1");
    wait_for("edge-1 to be verifying", Duration::from_secs(30), || {
        (phase(&plane) == "verifying").then_some(())
    });
    assert_eq!(
        node.serving_version().as_deref(),
        Some("3"),
        "v3 serves meanwhile"
    );
    restart_with(&mut node, None);
    settles_on(&plane, &node, 1);

    // 3. Killed during activation: the new model already serves, and the node's store
    //    does not say so yet.
    restart_with(&mut node, Some("agent::activate=return(120000)"));
    plane.deploy("field", "3");
    wait_for("edge-1 to swap v3 in", Duration::from_secs(30), || {
        (node.serving_version().as_deref() == Some("3")).then_some(())
    });
    restart_with(&mut node, None);
    settles_on(&plane, &node, 3);

    // 4. A corrupted bundle on disk is found at start, refused, and downloaded again;
    //    meanwhile the previous version serves.
    node.kill();
    let sha = plane.get("/api/v1/models/digits/versions/3")["bundle_sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    let installed = node.data_dir.join("bundles").join(format!("{sha}.bundle"));
    let mut bytes = std::fs::read(&installed).expect("installed bundle");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&installed, &bytes).expect("corrupt the bundle");
    node.restart();
    settles_on(&plane, &node, 3);
    let page = common::text(&format!("{}/metrics", node.url));
    assert!(
        common::metric_value(&page, "edgewise_stored_bundles_refused_total") >= 1.0,
        "the corrupted bundle was refused at start"
    );

    // 5. A full disk: the update is refused before its download, with the reason, and
    //    v3 keeps serving. (The node is told to keep more free space than any disk has.)
    node.extra = vec!["--min-free-disk".into(), u64::MAX.to_string()];
    std::fs::remove_file(node.data_dir.join("bundles").join(format!(
        "{}.bundle",
        plane.get("/api/v1/models/digits/versions/1")["bundle_sha256"]
            .as_str()
            .expect("sha256")
    )))
    .ok();
    node.restart();
    settles_on(&plane, &node, 3);
    plane.deploy("field", "1");
    let failure = wait_for("the update to be refused", Duration::from_secs(30), || {
        let state = reported(&plane, "edge-1");
        (state["phase"] == "failed").then(|| state["failure"].as_str().unwrap_or("").to_owned())
    });
    assert!(failure.contains("not enough disk space"), "{failure}");
    assert_eq!(node.infer().as_deref(), Ok("3"), "v3 keeps serving");
    assert_eq!(reported(&plane, "edge-1")["active"]["version"], 3);
}
