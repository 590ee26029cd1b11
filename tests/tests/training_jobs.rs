//! Training jobs through the REST API and the CLI: bad requests are refused by name,
//! a job on an uploaded file trains and registers a version signed by the automation
//! key with its lineage, and a running job can be cancelled without registering
//! anything.

mod common;

use std::time::Duration;

use common::{ControlPlane, data_file, wait_for};
use serde_json::{Value, json};

#[test]
fn jobs_train_register_and_cancel() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);

    // Refusals name what is wrong.
    let (status, body) = plane.call(
        reqwest::Method::POST,
        "/api/v1/training-jobs",
        Some(json!({ "model": "digits", "dataset": {} })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("dataset")),
        "{body}"
    );
    let (status, body) = plane.call(
        reqwest::Method::POST,
        "/api/v1/training-jobs",
        Some(json!({ "model": "digits", "spec": "digits-mlp", "dataset": { "uploaded": "f00d" } })),
    );
    assert_eq!(status, 404, "{body}");
    let refused = plane
        .request(reqwest::Method::POST, "/api/v1/datasets?name=x.csv")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .expect("upload");
    assert_eq!(refused.status().as_u16(), 400);

    // A job on an uploaded file trains, logs each epoch and registers v1.
    let out = plane.cli(&[
        "--json",
        "train",
        "submit",
        "--model",
        "digits",
        "--spec",
        "digits-mlp",
        "--epochs",
        "3",
        "--data",
        data_file("digits.csv.gz").to_str().expect("utf-8"),
    ]);
    let job: Value = serde_json::from_str(&out).expect("job JSON");
    let id = job["id"].as_str().expect("id").to_string();
    let logs = plane.cli(&["train", "logs", &id, "--follow"]);
    let job = plane.wait_job_finished(&id);
    assert_eq!(job["state"], "succeeded", "{job:#}\n{logs}");
    assert!(
        logs.contains("epoch") && logs.contains("registered digits version 1"),
        "{logs}"
    );
    let version = plane.get("/api/v1/models/digits/versions/1");
    assert_eq!(version["lineage"]["training_job"], Value::from(id.as_str()));
    assert_eq!(version["lineage"]["dataset_sha256"], job["data"]["sha256"]);
    let automation = std::fs::read_dir(dir.path().join("control-plane/keys"))
        .expect("keys")
        .flatten()
        .any(|entry| entry.file_name() == "automation.key");
    assert!(automation, "the automation key lives in the data folder");

    // A long job is cancelled while it runs; nothing is registered.
    let out = plane.cli(&[
        "--json",
        "train",
        "submit",
        "--model",
        "digits",
        "--epochs",
        "400",
        "--data",
        data_file("digits.csv.gz").to_str().expect("utf-8"),
    ]);
    let job: Value = serde_json::from_str(&out).expect("job JSON");
    let id = job["id"].as_str().expect("id").to_string();
    wait_for("the long job to run", Duration::from_secs(60), || {
        let logs = plane.cli(&["train", "logs", &id]);
        logs.contains("epoch").then_some(())
    });
    plane.cli(&["train", "cancel", &id]);
    let job = plane.wait_job_finished(&id);
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert_eq!(job["registered"], false);
    let versions = plane.get("/api/v1/models/digits/versions");
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    let again = plane.cli_output(&["train", "cancel", &id]);
    assert!(
        !again.status.success(),
        "a finished job cannot be cancelled"
    );
}
