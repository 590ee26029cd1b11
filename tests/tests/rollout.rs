//! Staged rollouts end to end: 20 simulated nodes in one group, replaying digits with
//! their true labels, and a real control plane judging each stage.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{ControlPlane, Simulator, Training, bundles, data_file, wait_for, wait_online};
use serde_json::Value;

const NODES: usize = 20;

/// A digits CSV whose labels are shuffled: a model trained on it has learned nothing.
fn shuffled_digits(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(data_file("digits.csv.gz")).expect("digits"),
        ),
        &mut text,
    )
    .expect("read digits");
    let rows: Vec<&str> = text.lines().collect();
    let mut labels: Vec<&str> = rows
        .iter()
        .map(|row| row.rsplit(',').next().unwrap_or("0"))
        .collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..labels.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        labels.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let path = dir.join("digits-shuffled.csv");
    let mut file = std::fs::File::create(&path).expect("create");
    for (row, label) in rows.iter().zip(labels) {
        let features = row.rsplit_once(',').map_or("", |(features, _)| features);
        writeln!(file, "{features},{label}").expect("write");
    }
    path
}

fn rollout(plane: &ControlPlane, id: &str) -> Value {
    plane.get(&format!("/api/v1/rollouts/{id}"))
}

/// Starts a 10/50/100 rollout and returns its id.
fn start(plane: &ControlPlane, version: &str, bake: &str) -> String {
    plane.start_rollout("fleet", version, "10,50,100", bake, &[])
}

/// Every device's reported active and previous versions.
fn versions(plane: &ControlPlane) -> Vec<(String, Value, Value)> {
    let devices = plane.get("/api/v1/devices");
    devices
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap_or_default().to_string(),
                d["reported"]["active"]["version"].clone(),
                d["reported"]["previous"]["version"].clone(),
            )
        })
        .collect()
}

fn wait_all_on(plane: &ControlPlane, version: u64) {
    wait_for(
        &format!("every node on version {version}"),
        Duration::from_secs(60),
        || {
            versions(plane)
                .iter()
                .all(|(_, active, _)| *active == version)
                .then_some(())
        },
    );
}

#[test]
fn canary_rollouts_complete_halt_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = &bundles().release;
    let bad = Training {
        data: shuffled_digits(dir.path()),
        ..Training::digits()
    }
    .bundle(key, 3, 8);
    let slow = Training::digits().bundle(key, 4, 4);
    for (name, bytes) in [("v3-shuffled", &bad), ("v4", &slow)] {
        std::fs::write(dir.path().join(format!("{name}.bundle")), bytes).expect("write bundle");
    }
    let mut plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    for bundle in [
        bundles().v1.clone(),
        bundles().v2.clone(),
        dir.path().join("v3-shuffled.bundle"),
        dir.path().join("v4.bundle"),
    ] {
        plane.cli(&["model", "push", bundle.to_str().expect("utf-8")]);
    }
    let _simulator = Simulator::start(
        &plane,
        dir.path(),
        "fleet",
        "sim",
        NODES,
        &data_file("digits.csv.gz"),
        &[
            "--rate",
            "40",
            "--shuffle",
            "--feedback",
            "--canaries",
            "2",
            "--slow-version",
            "4:25ms",
        ],
    );
    wait_online(&plane, NODES);
    plane.deploy_and_wait("fleet", "digits", "1");
    wait_all_on(&plane, 1);

    // A good version passes every stage, and every node ends on it.
    let good = start(&plane, "2", "2s");
    let record = plane.finish_rollout(&good);
    assert_eq!(record["state"], "completed", "{record:#}");
    wait_all_on(&plane, 2);
    let stages = record["stage_results"].as_array().expect("stages");
    assert_eq!(stages.len(), 3);
    for stage in stages {
        assert_eq!(stage["verdict"], "pass", "{stage:#}");
        let gates: Vec<&str> = stage["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        for gate in [
            "update_success",
            "error_rate",
            "latency",
            "drift",
            "output_distribution",
            "accuracy",
        ] {
            assert!(gates.contains(&gate), "stage lacks gate {gate}: {gates:?}");
        }
        assert!(
            stage["gates"][5]["numbers"]["canary_accuracy"]
                .as_f64()
                .is_some(),
            "{stage:#}"
        );
    }
    let status = plane.cli(&["rollout", "status", &good]);
    assert!(
        status.contains("output_distribution") && status.contains("completed"),
        "{status}"
    );

    // A model that learned nothing halts at the first stage; only its canaries ever
    // got it, and they go back.
    let bad = start(&plane, "3", "2s");
    let record = plane.finish_rollout(&bad);
    assert_eq!(record["state"], "rolled_back", "{record:#}");
    assert_eq!(record["stage"], 0);
    let failed: Vec<&str> = record["stage_results"][0]["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .filter(|g| g["verdict"] == "fail")
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        failed
            .iter()
            .any(|g| *g == "accuracy" || *g == "output_distribution"),
        "failed gates: {failed:?}"
    );
    let moved: Vec<String> = record["moved"]
        .as_object()
        .expect("moved")
        .keys()
        .cloned()
        .collect();
    assert_eq!(moved.len(), 2, "the first stage of 10% holds 2 of 20 nodes");
    assert!(
        moved
            .iter()
            .all(|id| ["sim-000", "sim-001"].contains(&id.as_str())),
        "canaries go first: {moved:?}"
    );
    wait_all_on(&plane, 2);
    for (id, _, previous) in versions(&plane) {
        if !moved.contains(&id) {
            assert_ne!(previous, 3, "{id} outside the canary got the bad version");
        }
    }

    // A slow version (its self-test passes) is halted by the latency gate.
    let slow = start(&plane, "4", "2s");
    let record = plane.finish_rollout(&slow);
    assert_eq!(record["state"], "rolled_back", "{record:#}");
    let latency = record["stage_results"][0]["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == "latency")
        .cloned();
    assert_eq!(
        latency.as_ref().map(|g| g["verdict"].clone()),
        Some(Value::from("fail")),
        "{record:#}"
    );
    wait_all_on(&plane, 2);

    // In a shadow stage the bad version runs beside v2 on the canaries and is never
    // served; its disagreement halts it.
    let shadowed = plane.start_rollout("fleet", "3", "10,100", "2s", &["--shadow"]);
    let record = plane.finish_rollout(&shadowed);
    assert_eq!(record["state"], "rolled_back", "{record:#}");
    let agreement = record["stage_results"][0]["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == "shadow_agreement")
        .cloned()
        .expect("a shadow agreement gate");
    assert_eq!(agreement["verdict"], "fail", "{agreement:#}");
    assert!(
        agreement["numbers"]["agreement"]
            .as_f64()
            .expect("agreement")
            < 0.9
    );
    wait_all_on(&plane, 2);
    for (id, _, previous) in versions(&plane) {
        assert_ne!(previous, 3, "{id} served the shadowed version");
    }

    // Killing the control plane mid-rollout: the restarted one carries on from its stage.
    let resumed = start(&plane, "1", "3s");
    wait_for(
        "the rollout to reach its second stage",
        Duration::from_secs(180),
        || (rollout(&plane, &resumed)["stage"] == 1).then_some(()),
    );
    plane.kill();
    std::thread::sleep(Duration::from_secs(1));
    plane.restart();
    let record = plane.finish_rollout(&resumed);
    assert_eq!(record["state"], "completed", "{record:#}");
    assert!(
        record["audit"]
            .as_array()
            .expect("audit")
            .iter()
            .any(|e| e["event"] == "stage_passed")
    );
    wait_all_on(&plane, 1);

    // No telemetry window was lost to the restart (the embedded broker restarted with
    // the control plane): each node's windows are stored once each, with no gap.
    for device in ["sim-000", "sim-010"] {
        common::assert_no_window_lost(&plane, device);
    }
}
