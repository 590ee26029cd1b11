//! MLflow end to end, against a real `mlflow server` (SQLite backend, artifacts served
//! through its proxy) started on 127.0.0.1: `edgewise-train` logs its params,
//! per-epoch loss, test metrics and bundle, and registers the version tagged with the
//! bundle's sha256; `edgewise model import --from-mlflow NAME@ALIAS` brings that
//! version into the Edgewise registry byte for byte.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ControlPlane, binary, bundles, data_file, http_json, wait_for};
use serde_json::{Value, json};

/// A tracking server in its own process group, stopped on drop.
struct MlflowServer {
    child: Child,
    url: String,
}

impl MlflowServer {
    /// Starts one in `dir`; `None` when mlflow is not installed (and not required).
    fn start(dir: &Path) -> Option<MlflowServer> {
        let installed = Command::new("mlflow")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !installed {
            assert!(
                std::env::var_os("EDGEWISE_REQUIRE_MLFLOW").is_none(),
                "EDGEWISE_REQUIRE_MLFLOW is set but `mlflow` cannot run (pip install mlflow)"
            );
            eprintln!("skipping: mlflow is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut command = Command::new("mlflow");
        command
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start mlflow server");
        let server = MlflowServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let health = format!("{}/health", server.url);
        wait_for("mlflow server health", Duration::from_secs(180), || {
            reqwest::blocking::get(&health)
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        });
        Some(server)
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http_json(
            reqwest::Method::GET,
            &format!("{}/api/2.0/mlflow/{path}", self.url),
            None,
        );
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

impl Drop for MlflowServer {
    /// SIGTERM lets `mlflow server` stop its uvicorn worker too.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if self.child.try_wait().is_ok_and(|status| status.is_some()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn training_logs_to_mlflow_and_the_registry_imports_by_alias() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mlflow) = MlflowServer::start(dir.path()) else {
        return;
    };
    let out = dir.path().join("out");
    let trained = Command::new(binary("edgewise-train"))
        .args([
            "train",
            "--spec",
            "digits-mlp",
            "--name",
            "digits",
            "--version",
            "7",
        ])
        .args(["--epochs", "3", "--seed", "3"])
        .arg("--data")
        .arg(data_file("digits.csv.gz"))
        .arg("--out")
        .arg(&out)
        .arg("--signing-key")
        .arg(bundles().dir.join("release.key"))
        .env("MLFLOW_TRACKING_URI", &mlflow.url)
        .env("MLFLOW_EXPERIMENT_NAME", "edgewise-e2e")
        .output()
        .expect("run edgewise-train");
    let stdout = String::from_utf8_lossy(&trained.stdout);
    assert!(
        trained.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mlflow"))
        .unwrap_or_else(|| panic!("no mlflow line in:\n{stdout}"));
    let run_id = line.split_whitespace().nth(2).expect("run id").to_string();
    let bundle = std::fs::read(out.join("digits-v7.bundle")).expect("bundle");
    let sha256 = edgewise_core::bundle::sha256_hex(&bundle);

    // The run: params, per-epoch loss, test metrics, the bundle as an artifact.
    let run = &mlflow.get(&format!("runs/get?run_id={run_id}"))["run"];
    assert_eq!(run["info"]["status"], "FINISHED");
    let params = run["data"]["params"].as_array().expect("params");
    assert!(
        params.contains(&json!({ "key": "epochs", "value": "3" })),
        "{params:?}"
    );
    let metrics = run["data"]["metrics"].as_array().expect("metrics");
    assert!(
        metrics
            .iter()
            .any(|m| m["key"] == "test_accuracy" && m["value"].as_f64().is_some_and(|v| v > 0.5)),
        "{metrics:?}"
    );
    let history = mlflow.get(&format!(
        "metrics/get-history?run_id={run_id}&metric_key=loss"
    ));
    assert_eq!(
        history["metrics"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );
    let listed = mlflow.get(&format!("artifacts/list?run_id={run_id}&path=bundle"));
    assert_eq!(
        listed["files"][0]["path"], "bundle/digits-v7.bundle",
        "{listed}"
    );

    // The registered version carries the bundle's hash; an alias points at it.
    let version = &mlflow.get("model-versions/get?name=digits&version=1")["model_version"];
    let tags = version["tags"].as_array().expect("tags");
    assert!(
        tags.contains(&json!({ "key": "bundle_sha256", "value": sha256 })),
        "{tags:?}"
    );
    let (status, answer) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/2.0/mlflow/registered-models/alias", mlflow.url),
        Some(json!({ "name": "digits", "alias": "champion", "version": "1" })),
    );
    assert_eq!(status, 200, "{answer}");

    // The control plane imports it by alias, and refuses a missing alias by name.
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let imported = plane.cli(&[
        "--json",
        "model",
        "import",
        "--from-mlflow",
        "digits@champion",
        "--tracking-uri",
        &mlflow.url,
    ]);
    let view: Value = serde_json::from_str(&imported).expect("import JSON");
    assert_eq!(view["version"], 7);
    assert_eq!(view["bundle_sha256"], Value::from(sha256.as_str()));
    let missing = plane.cli_output(&[
        "model",
        "import",
        "--from-mlflow",
        "digits@nowhere",
        "--tracking-uri",
        &mlflow.url,
    ]);
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.contains("nowhere"), "{message}");
}
