//! The delivery pipeline as CI runs it: `pipelines/train-and-deploy.sh` against a live
//! control plane and four simulated nodes replaying rainfall rows with their labels.
//! The first run finds an empty group and deploys v1 straight; the second trains a
//! better candidate, beats the champion on the held-out rows and completes a canary
//! rollout; the third trains a much worse one, which is refused before anything is
//! pushed. The champion alias follows only the deployed versions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ControlPlane, Simulator, binary, bundles, data_file};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the pipeline with `extra` flags, as a CI job would: with a token of role `ci`;
/// returns its exit status code.
fn run_pipeline(plane: &ControlPlane, work: &Path, extra: &[&str]) -> i32 {
    let key = std::fs::read_to_string(bundles().dir.join("release.key")).expect("release key");
    let name = format!(
        "pipeline-{}",
        work.file_name().and_then(|n| n.to_str()).unwrap_or("run")
    );
    let token = plane
        .cli(&["token", "create", &name, "--role", "ci"])
        .trim()
        .to_owned();
    let bin_dir = binary("edgewise").parent().expect("bin dir").to_owned();
    let output = Command::new("bash")
        .arg(repo().join("pipelines/train-and-deploy.sh"))
        .args(["--server", &plane.url, "--source-revision", "test"])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--work-dir")
        .arg(work)
        .args(["--stages", "25,100", "--bake", "3s", "--poll", "1"])
        .args(extra)
        .env("EDGEWISE_RELEASE_KEY", key)
        .env("EDGEWISE_TOKEN", token)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run the pipeline");
    eprintln!(
        "pipeline {extra:?}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.status.code().unwrap_or(-1)
}

#[test]
fn train_and_deploy_ships_better_models_and_refuses_worse_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let _fleet = Simulator::start(
        &plane,
        dir.path(),
        "field",
        "pipe",
        4,
        &data_file("rainfall.csv.gz"),
        &[
            "--label",
            "rain",
            "--rows",
            "0..12000",
            "--rate",
            "50",
            "--shuffle",
            "--feedback",
        ],
    );

    assert_eq!(run_pipeline(&plane, &dir.path().join("run-1"), &[]), 0);
    let group = plane.get("/api/v1/groups/field");
    assert_eq!(group["target"], "rainfall:1", "{group}");
    assert_eq!(plane.get("/api/v1/models/rainfall/aliases")["champion"], 1);

    assert_eq!(
        run_pipeline(&plane, &dir.path().join("run-2"), &["--epochs", "20"]),
        0
    );
    let rollouts = plane.get("/api/v1/rollouts");
    let latest = &rollouts[0];
    assert_eq!(
        (latest["version"].as_u64(), latest["state"].as_str()),
        (Some(2), Some("completed")),
        "{latest}"
    );
    assert_eq!(plane.get("/api/v1/models/rainfall/aliases")["champion"], 2);
    let lineage = &plane.get("/api/v1/models/rainfall/versions/2")["lineage"];
    assert_eq!(lineage["source_revision"], "test", "{lineage}");

    let refused = run_pipeline(
        &plane,
        &dir.path().join("run-3"),
        &["--epochs", "1", "--learning-rate", "0.00005"],
    );
    assert_eq!(refused, 6, "a worse candidate is refused");
    let versions = plane.get("/api/v1/models/rainfall/versions");
    assert_eq!(
        versions.as_array().map(Vec::len),
        Some(2),
        "nothing was pushed: {versions}"
    );
    assert_eq!(plane.get("/api/v1/models/rainfall/aliases")["champion"], 2);
}
