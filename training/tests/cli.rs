//! The `edgewise-train` binary as a user runs it: keygen, train, inspect, verify, sign.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn edgewise_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgewise-train"))
        .args(args)
        .output()
        .expect("edgewise-train runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn train_inspect_verify_and_resign_a_bundle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let release = path(dir.path(), "release");
    let other = path(dir.path(), "other");
    for prefix in [&release, &other] {
        let keygen = edgewise_train(&["keygen", "--out", prefix]);
        assert!(keygen.status.success(), "{}", stderr(&keygen));
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    let out = path(dir.path(), "out");
    let train = edgewise_train(&[
        "train",
        "--data",
        &data.display().to_string(),
        "--spec",
        "digits-mlp",
        "--epochs",
        "5",
        "--out",
        &out,
        "--signing-key",
        &format!("{release}.key"),
    ]);
    assert!(train.status.success(), "{}", stderr(&train));
    let report = stdout(&train);
    assert!(report.contains("test accuracy"), "{report}");
    assert!(report.contains("confusion matrix"), "{report}");
    let bundle = path(dir.path(), "out/digits-v1.bundle");

    let inspect = edgewise_train(&["inspect", &bundle, "--json"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let manifest: Value = serde_json::from_str(&stdout(&inspect)).expect("inspect --json is JSON");
    assert_eq!(manifest["name"], "digits");
    assert_eq!(manifest["version"], 1);
    assert!(
        manifest["lineage"]["metrics"]["test_accuracy"]
            .as_f64()
            .is_some_and(|a| a > 0.5)
    );
    let summary = edgewise_train(&["inspect", &bundle]);
    assert!(
        stdout(&summary).contains("model           digits version 1"),
        "{}",
        stdout(&summary)
    );

    let trusted = edgewise_train(&["verify", &bundle, "--trust", &format!("{release}.pub")]);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let untrusted = edgewise_train(&["verify", &bundle, "--trust", &format!("{other}.pub")]);
    assert!(!untrusted.status.success());
    assert!(
        stderr(&untrusted).contains("not trusted") || stderr(&untrusted).contains("untrusted"),
        "{}",
        stderr(&untrusted)
    );

    let resigned = path(dir.path(), "resigned.bundle");
    let sign = edgewise_train(&[
        "sign",
        &bundle,
        "--signing-key",
        &format!("{other}.key"),
        "--out",
        &resigned,
    ]);
    assert!(sign.status.success(), "{}", stderr(&sign));
    let verify = edgewise_train(&["verify", &resigned, "--trust", &format!("{other}.pub")]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn a_bad_spec_file_names_the_layer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = path(dir.path(), "k");
    assert!(edgewise_train(&["keygen", "--out", &key]).status.success());
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"input_shape":[64],"layers":[{"type":"linear","out_features":32},{"type":"conv2d","out_channels":4,"kernel_size":[3,3]}]}"#,
    )
    .expect("write spec");
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv.gz");
    let train = edgewise_train(&[
        "train",
        "--data",
        &data.display().to_string(),
        "--spec",
        &spec.display().to_string(),
        "--out",
        &path(dir.path(), "out"),
        "--signing-key",
        &format!("{key}.key"),
    ]);
    assert!(!train.status.success());
    assert!(
        stderr(&train).contains("layer 1 (conv2d)"),
        "{}",
        stderr(&train)
    );
}
