//! A node (`edgewise-runtime run`) as a real process, and inference calls to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use edgewise_core::node_config::NodeConfig;
use serde_json::{Value, json};

use super::{ControlPlane, binary, http_json, spawn_until, stop, wait_for};

/// Starts a node per config and waits until the control plane sees them all online.
pub fn start_nodes(plane: &ControlPlane, configs: &[PathBuf]) -> Vec<Node> {
    let nodes: Vec<Node> = configs.iter().map(|config| Node::start(config)).collect();
    wait_for("every node online", Duration::from_secs(30), || {
        let devices = plane.get("/api/v1/devices");
        devices
            .as_array()?
            .iter()
            .all(|d| d["online"] == true)
            .then_some(())
    });
    nodes
}

/// The device's MQTT password, from its node config.
pub fn password_of(config: &Path) -> String {
    NodeConfig::from_toml(&std::fs::read_to_string(config).expect("config"))
        .expect("node config parses")
        .mqtt
        .password
}

/// A running node, killed on drop.
pub struct Node {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    config: PathBuf,
    /// Its data folder.
    pub data_dir: PathBuf,
    /// Flags beyond the defaults.
    pub extra: Vec<String>,
    /// Environment variables it starts with (FAILPOINTS, for fault injection).
    pub env: Vec<(String, String)>,
}

impl Node {
    /// Bytes held in its partial downloads.
    pub fn partial_bytes(&self) -> u64 {
        std::fs::read_dir(self.data_dir.join("downloads"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Starts `edgewise-runtime run` with this config, on the CPU and a free port.
    pub fn start(config: &Path) -> Node {
        Node::start_with(config, &[])
    }

    /// The same, with `extra` flags.
    pub fn start_with(config: &Path, extra: &[&str]) -> Node {
        let data_dir = config.with_extension("data");
        let mut node = Node {
            child: None,
            url: String::new(),
            config: config.to_owned(),
            data_dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        node.launch();
        node
    }

    fn launch(&mut self) {
        let mut command = Command::new(binary("edgewise-runtime"));
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", "127.0.0.1:0", "--device", "cpu"])
            .args(&self.extra)
            .envs(self.env.iter().cloned());
        let (child, line) = spawn_until(command, " at http://", "edgewise-runtime run");
        self.url = line
            .rsplit(" at ")
            .next()
            .expect("address")
            .trim()
            .to_string();
        self.child = Some(child);
    }

    /// Kills the process at once.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Starts it again with the same config and data folder (a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The model version it serves, if any.
    pub fn serving_version(&self) -> Option<String> {
        let (status, body) = http_json(
            reqwest::Method::GET,
            &format!("{}/v2/models/digits", self.url),
            None,
        );
        (status == 200).then(|| body["versions"][0].as_str().unwrap_or_default().to_string())
    }

    /// One infer call; returns the model version that answered.
    pub fn infer(&self) -> Result<String, String> {
        infer(&reqwest::blocking::Client::new(), &self.url)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The infer body: one all-zero digit image.
pub fn infer_body() -> Value {
    json!({ "inputs": [{ "name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0f32; 64] }] })
}

/// One infer call with `client`; returns the answering version or the failure.
pub fn infer(client: &reqwest::blocking::Client, url: &str) -> Result<String, String> {
    let response = client
        .post(format!("{url}/v2/models/digits/infer"))
        .json(&infer_body())
        .send()
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["model_version"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}
