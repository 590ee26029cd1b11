//! `edgewise serve` as a process: what its first start creates, what a restart keeps,
//! and how the CLI reports an unreachable control plane.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `edgewise serve` on ephemeral ports, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the control plane on `data_dir` and waits for its ready line.
fn start(data_dir: &Path) -> (Serve, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewise"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start edgewise serve");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains("ready"))
        .expect("a ready line");
    (Serve(child), line)
}

fn deployment_key_id(data_dir: &Path) -> String {
    let text =
        std::fs::read_to_string(data_dir.join("keys/deployment.pub")).expect("deployment.pub");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON key file");
    json["key_id"].as_str().expect("key id").to_string()
}

#[test]
fn first_start_creates_the_data_folder_and_restarts_keep_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let (serve, line) = start(&data_dir);
    assert!(
        line.contains("api http://127.0.0.1:") && line.contains("mqtt mqtt://127.0.0.1:"),
        "{line}"
    );
    for file in [
        "keys/deployment.key",
        "keys/deployment.pub",
        "tls/ca.pem",
        "tls/ca.key",
        "tls/server.pem",
        "tls/server.key",
        "secrets/mqtt-service",
    ] {
        assert!(data_dir.join(file).is_file(), "{file} was not created");
    }
    assert!(data_dir.join("store").is_dir() && data_dir.join("artifacts").is_dir());
    let ca = std::fs::read_to_string(data_dir.join("tls/ca.pem")).expect("ca.pem");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    #[cfg(unix)]
    for secret in [
        "keys/deployment.key",
        "tls/ca.key",
        "tls/server.key",
        "secrets/mqtt-service",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.join(secret))
            .expect("secret")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others: {mode:o}");
    }
    let key_id = deployment_key_id(&data_dir);
    drop(serve);

    let (_serve, _) = start(&data_dir);
    assert_eq!(
        deployment_key_id(&data_dir),
        key_id,
        "a restart must keep the deployment key"
    );
    assert_eq!(
        std::fs::read_to_string(data_dir.join("tls/ca.pem")).expect("ca.pem"),
        ca,
        "a restart must keep the CA"
    );
}

#[test]
fn the_cli_names_an_unreachable_control_plane() {
    let output = Command::new(env!("CARGO_BIN_EXE_edgewise"))
        .args(["--server", "http://127.0.0.1:9", "device", "list"])
        .output()
        .expect("run edgewise");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the control plane at http://127.0.0.1:9"),
        "{stderr}"
    );
}
