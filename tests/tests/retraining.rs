//! The closed loop with no human step: a simulated fleet replays rainfall rows 12,000
//! and later (inputs the model never saw) with labels that arrive late; the monitor
//! confirms the drift, the retraining policy trains on the captured labelled rows,
//! the candidate beats the serving version on held-out recent rows, is registered with
//! its lineage, and goes through a canary stage and then to the whole group.

mod common;

use std::time::Duration;

use common::{ControlPlane, Simulator, Training, bundles, data_file, wait_for, wait_online};
use serde_json::{Value, json};

const NODES: usize = 4;

#[test]
fn drift_retrains_evaluates_registers_and_rolls_out_a_better_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = Training::rainfall_before_drift().bundle(&bundles().release, 1, 10);
    let path = dir.path().join("rainfall-v1.bundle");
    std::fs::write(&path, bundle).expect("write bundle");
    let plane = ControlPlane::start(
        &dir.path().join("control-plane"),
        &["--monitor-interval", "1s"],
    );
    plane.cli(&["model", "push", path.to_str().expect("utf-8")]);
    let policy = json!({
        "groups": ["field"],
        "min_labelled": 1300,
        "holdout_fraction": 0.2,
        "margin": 0.05,
        "hyperparameters": { "epochs": 40, "seed": 7 },
        "cooldown_seconds": 3600,
        "rollout": {
            "stages": [25, 100],
            "bake_seconds": 3,
            // The retrained model is meant to answer differently; accuracy judges it.
            "gates": { "max_js_distance": 1.0, "min_labels": 30 }
        }
    });
    let (status, answer) = plane.call(
        reqwest::Method::PUT,
        "/api/v1/models/rainfall/retraining-policy",
        Some(policy),
    );
    assert_eq!(status, 200, "{answer}");

    let _fleet = Simulator::start(
        &plane,
        dir.path(),
        "field",
        "field",
        NODES,
        &data_file("rainfall.csv.gz"),
        &[
            "--label",
            "rain",
            "--rows",
            "12000..",
            "--rate",
            "50",
            "--shuffle",
            "--feedback",
            "--label-delay",
            "2s",
            "--capture-rate",
            "1",
            "--capture-per-window",
            "200",
            "--canaries",
            "1",
        ],
    );
    wait_online(&plane, NODES);
    plane.deploy_and_wait("field", "rainfall", "1");

    // Drift → a job, started by the policy.
    let job = wait_for("a retraining job", Duration::from_secs(120), || {
        plane
            .get("/api/v1/training-jobs")
            .as_array()
            .and_then(|jobs| jobs.first().cloned())
    });
    assert_eq!(job["origin"], "retraining-policy", "{job:#}");
    let id = job["id"].as_str().expect("job id").to_string();
    let job = plane.wait_job_finished(&id);
    let log = plane.cli(&["train", "logs", &id]);
    eprintln!("{log}");
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(log.contains("retraining policy: drift on"), "{log}");
    let evaluation = &job["evaluation"];
    let (candidate, parent) = (
        evaluation["candidate_accuracy"]
            .as_f64()
            .expect("candidate"),
        evaluation["parent_accuracy"].as_f64().expect("parent"),
    );
    eprintln!(
        "held-out recent rows: candidate {candidate:.3}, version 1 {parent:.3} over {} rows; trained on {} rows",
        evaluation["examples"], job["data"]["rows"]
    );
    assert!(candidate >= parent + 0.05, "{evaluation:#}");
    assert_eq!(job["registered"], true);

    // Registered with its lineage.
    let version = plane.get("/api/v1/models/rainfall/versions/2");
    assert_eq!(
        version["lineage"]["training_job"],
        Value::from(id.as_str()),
        "{version:#}"
    );
    assert_eq!(version["lineage"]["parent_version"], 1);
    assert_eq!(version["lineage"]["dataset_sha256"], job["data"]["sha256"]);

    // A canary, then the whole group.
    let rollout_id = wait_for("the policy's rollout", Duration::from_secs(30), || {
        let job = plane.get(&format!("/api/v1/training-jobs/{id}"));
        job["rollouts"][0].as_str().map(str::to_owned)
    });
    let rollout = wait_for("the rollout to finish", Duration::from_secs(150), || {
        let rollout = plane.get(&format!("/api/v1/rollouts/{rollout_id}"));
        (rollout["state"] != "running").then_some(rollout)
    });
    assert_eq!(rollout["state"], "completed", "{rollout:#}");
    let stages = rollout["stage_results"].as_array().expect("stages");
    assert_eq!(stages[0]["percent"], 25);
    assert_eq!(
        stages[0]["devices"].as_array().map(Vec::len),
        Some(1),
        "one canary first"
    );
    wait_for("every node on version 2", Duration::from_secs(60), || {
        plane
            .get("/api/v1/devices")
            .as_array()
            .expect("devices")
            .iter()
            .all(|d| d["reported"]["active"]["version"] == 2)
            .then_some(())
    });
}
