//! The end-to-end harness: trained bundles, and the control plane, nodes and Mosquitto
//! as real processes on 127.0.0.1 with ephemeral ports, killed when dropped.
#![allow(dead_code)]

pub mod flows;
pub mod mosquitto;
pub mod moto;
pub mod mqtt;
mod node;

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use node::{Node, infer, infer_body, password_of, start_nodes};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgewise_core::keys::SecretKey;
use edgewise_core::spec::ModelSpec;
use edgewise_training::data::DataOptions;
pub use edgewise_training::data::LabelColumn;
use edgewise_training::pipeline::{TrainRequest, run};
use edgewise_training::trainer::TrainConfig;
use serde_json::Value;

/// Writes digits version `version` of a wide model (a bundle of about 2 MB) into
/// `dir` and returns its path: big enough for a throttled transfer to be caught in
/// the middle.
pub fn wide_bundle(dir: &Path, version: u64) -> PathBuf {
    let spec = ModelSpec::from_json(
        r#"{"input_shape":[64],"layers":[{"type":"linear","out_features":4096},{"type":"relu"},{"type":"linear","out_features":10}]}"#,
    )
    .expect("spec");
    let path = dir.join(format!("digits-v{version}.bundle"));
    std::fs::write(&path, train(&bundles().release, spec, version, 1)).expect("write bundle");
    path
}

/// Signed bundles shared by the tests of one binary.
pub struct Bundles {
    /// Folder holding the files.
    pub dir: PathBuf,
    /// The release key that signed them.
    pub release: SecretKey,
    /// Its public key file.
    pub release_pub: PathBuf,
    /// digits v1.
    pub v1: PathBuf,
    /// digits v2.
    pub v2: PathBuf,
}

/// The path of a workspace binary, built by `cargo test --workspace`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// What to train on.
pub struct Training<'a> {
    /// The data file.
    pub data: PathBuf,
    /// Its label column.
    pub label: LabelColumn,
    /// Rows to use.
    pub rows: Option<std::ops::Range<usize>>,
    /// The model spec.
    pub spec: ModelSpec,
    /// Model name.
    pub name: &'a str,
}

impl Training<'_> {
    /// The digits MLP on the shipped digits data.
    pub fn digits() -> Self {
        Training {
            data: data_file("digits.csv.gz"),
            label: LabelColumn::Last,
            rows: None,
            spec: ModelSpec::preset("digits-mlp").expect("preset"),
            name: "digits",
        }
    }

    /// The rainfall MLP on rows 0–11,999 (the inputs before the drift).
    pub fn rainfall_before_drift() -> Self {
        Training {
            data: data_file("rainfall.csv.gz"),
            label: LabelColumn::Named("rain".into()),
            rows: Some(0..12_000),
            spec: ModelSpec::preset("rainfall-mlp").expect("preset"),
            name: "rainfall",
        }
    }

    /// Trains `version` for `epochs` and signs it with `key`; returns the bundle bytes.
    pub fn bundle(self, key: &SecretKey, version: u64, epochs: usize) -> Vec<u8> {
        let request = TrainRequest {
            data: self.data,
            data_options: DataOptions {
                label: self.label,
                features: Vec::new(),
                rows: self.rows,
            },
            spec: self.spec,
            name: self.name.to_string(),
            version,
            config: TrainConfig {
                epochs,
                batch_size: 32,
                learning_rate: 1e-3,
                seed: version,
                patience: 5,
            },
            validation_fraction: 0.1,
            test_fraction: 0.2,
            source_revision: None,
            training_job: None,
            parent_version: None,
        };
        run(&request, key, &indicatif::ProgressBar::hidden())
            .expect("train")
            .bundle
    }
}

/// Trains a digits model version with `spec`.
pub fn train(key: &SecretKey, spec: ModelSpec, version: u64, epochs: usize) -> Vec<u8> {
    Training {
        spec,
        ..Training::digits()
    }
    .bundle(key, version, epochs)
}

/// digits v1 and v2, trained once per test binary.
pub fn bundles() -> &'static Bundles {
    static BUNDLES: OnceLock<Bundles> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let release = SecretKey::generate();
        let (_, release_pub) = release.save(&dir.join("release")).expect("save key");
        let mut paths = Vec::new();
        for version in [1, 2] {
            let bytes = train(
                &release,
                ModelSpec::preset("digits-mlp").expect("preset"),
                version,
                4,
            );
            let path = dir.join(format!("digits-v{version}.bundle"));
            std::fs::write(&path, bytes).expect("write bundle");
            paths.push(path);
        }
        let v2 = paths.pop().expect("v2");
        let v1 = paths.pop().expect("v1");
        Bundles {
            dir,
            release,
            release_pub,
            v1,
            v2,
        }
    })
}

/// Starts `command`, waits for a stdout line containing `marker`, and returns the
/// child and that line. Later stdout lines are discarded.
pub(crate) fn spawn_until(mut command: Command, marker: &str, what: &str) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (lines, line) = mpsc::channel();
    std::thread::spawn(move || {
        for text in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(text);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match line.recv_timeout(remaining) {
            Ok(text) if text.contains(marker) => return (child, text),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("{what} did not print {marker:?}");
            }
        }
    }
}

/// A running control plane, killed on drop.
pub struct ControlPlane {
    child: Option<Child>,
    /// Its data folder.
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Arguments it was started with, reused on restart.
    args: Vec<String>,
    /// Environment variables it is started with.
    env: Vec<(String, String)>,
    /// The addresses it printed.
    pub ports: Ports,
    /// The admin API token its first start wrote into the data folder.
    pub token: String,
}

/// Words after `key` in a line of `key value` pairs.
fn field(line: &str, key: &str) -> String {
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == key {
            return words.next().unwrap_or_default().to_string();
        }
    }
    panic!("no {key} in {line:?}");
}

impl ControlPlane {
    /// Starts `edgewise serve` on ephemeral ports, trusting the shared release key, with `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ControlPlane {
        ControlPlane::start_with_env(data_dir, extra, &[])
    }

    /// The same, with environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ControlPlane {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--mqtt-listen".into(),
            "127.0.0.1:0".into(),
            "--quic".into(),
            "127.0.0.1:0".into(),
            "--trust".into(),
            bundles().release_pub.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut plane = ControlPlane {
            child: None,
            data_dir: data_dir.to_owned(),
            url: String::new(),
            args,
            ports: Ports::default(),
            token: String::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        plane.launch();
        // Later starts reuse the same ports, so the nodes' configs stay right.
        let ports = plane.ports.clone();
        for (flag, address) in [
            ("--http", &ports.http),
            ("--mqtt-listen", &ports.mqtt),
            ("--quic", &ports.quic),
        ] {
            if let Some(at) = plane.args.iter().position(|arg| arg == flag) {
                plane.args[at + 1] = address.clone();
            }
        }
        plane
    }

    fn launch(&mut self) {
        let mut command = Command::new(binary("edgewise"));
        command.args(&self.args).envs(self.env.iter().cloned());
        let (child, line) = spawn_until(command, "control plane ready", "edgewise serve");
        self.url = field(&line, "api");
        self.ports = Ports {
            http: self.url.trim_start_matches("http://").to_string(),
            mqtt: field(&line, "mqtt")
                .trim_start_matches("mqtt://")
                .to_string(),
            quic: field(&line, "quic"),
        };
        self.token = std::fs::read_to_string(self.data_dir.join("secrets/admin-token"))
            .expect("the admin token file")
            .trim()
            .to_owned();
        self.child = Some(child);
    }

    /// Kills the process at once (no graceful shutdown).
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Starts it again on the same ports and data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs the `edgewise` CLI against this control plane; returns stdout, panicking on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = self.cli_output(args);
        assert!(
            output.status.success(),
            "edgewise {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs the `edgewise` CLI and returns its whole output.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        self.cli_output_as(&self.token, args)
    }

    /// Runs the `edgewise` CLI with another API token and returns its whole output.
    pub fn cli_output_as(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(binary("edgewise"))
            .arg("--server")
            .arg(&self.url)
            .env("EDGEWISE_TOKEN", token)
            .args(args)
            .output()
            .expect("run edgewise")
    }

    /// A request to `path` carrying the admin token.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        reqwest::blocking::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// One API call as admin with an optional JSON body; returns the status and the JSON
    /// answer (Null if none).
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request)
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).1
    }

    /// Registers a device in `group` and returns its node config path.
    pub fn add_device(&self, name: &str, group: &str, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{name}.toml"));
        self.cli(&[
            "device",
            "add",
            name,
            "--group",
            group,
            "--out",
            path.to_str().expect("utf-8"),
        ]);
        path
    }

    /// Deploys and returns the deployment id.
    pub fn deploy(&self, group: &str, version: &str) -> String {
        let output = self.try_deploy(group, version);
        assert!(
            output.status.success(),
            "deploy failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let status: Value = serde_json::from_slice(&output.stdout).expect("deploy JSON");
        status["deployment"]["id"].as_str().expect("id").to_string()
    }

    /// Tries to deploy digits `version` to `group`; returns the CLI's output.
    pub fn try_deploy(&self, group: &str, version: &str) -> std::process::Output {
        let args = ["--json", "deploy", "--group", group, "--model", "digits"];
        self.cli_output(&[&args[..], &["--version", version]].concat())
    }

    /// Starts a rollout of digits `version` to `group` over `stages` (e.g. `10,50,100`)
    /// with `extra` flags; returns its id.
    pub fn start_rollout(
        &self,
        group: &str,
        version: &str,
        stages: &str,
        bake: &str,
        extra: &[&str],
    ) -> String {
        let mut args = vec!["--json", "rollout", "start", "--group", group];
        args.extend(["--model", "digits", "--version", version]);
        args.extend(["--stages", stages, "--bake", bake]);
        args.extend(extra);
        let record: Value = serde_json::from_str(&self.cli(&args)).expect("rollout JSON");
        record["id"].as_str().expect("rollout id").to_string()
    }

    /// Waits until rollout `id` leaves `running`; returns it.
    pub fn finish_rollout(&self, id: &str) -> Value {
        wait_for(
            &format!("rollout {id} to finish"),
            Duration::from_secs(150),
            || {
                let record = self.get(&format!("/api/v1/rollouts/{id}"));
                (record["state"] != "running").then_some(record)
            },
        )
    }

    /// Waits until training job `id` ends; returns it.
    pub fn wait_job_finished(&self, id: &str) -> Value {
        wait_for(
            &format!("training job {id} to end"),
            Duration::from_secs(180),
            || {
                let job = self.get(&format!("/api/v1/training-jobs/{id}"));
                matches!(
                    job["state"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
                .then_some(job)
            },
        )
    }

    /// Deploys `model` `version` to `group` and waits until every device has it.
    pub fn deploy_and_wait(&self, group: &str, model: &str, version: &str) {
        self.cli(&[
            "deploy",
            "--group",
            group,
            "--model",
            model,
            "--version",
            version,
            "--wait",
        ]);
    }

    /// The control plane's service MQTT password, from its data folder.
    pub fn service_password(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("secrets/mqtt-service"))
            .expect("service secret")
            .trim()
            .to_string()
    }

    /// The deployment signing key, from its data folder.
    pub fn deployment_key(&self) -> SecretKey {
        SecretKey::load(&self.data_dir.join("keys/deployment.key")).expect("deployment key")
    }

    /// The embedded broker's address.
    pub fn mqtt_address(&self) -> SocketAddr {
        self.ports.mqtt.parse().expect("mqtt address")
    }

    /// The value of a counter on `/metrics` (0 if absent).
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&text(&format!("{}/metrics", self.url)), name)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sum of every series of `name` in a Prometheus text page.
pub fn metric_value(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `edgewise-runtime simulate`, killed on drop.
pub struct Simulator {
    child: Option<Child>,
}

impl Simulator {
    /// Starts `count` virtual nodes named `prefix-NNN` in `group`, replaying `data`
    /// with the extra `args`, and waits until they are registered.
    pub fn start(
        plane: &ControlPlane,
        dir: &Path,
        group: &str,
        prefix: &str,
        count: usize,
        data: &Path,
        args: &[&str],
    ) -> Simulator {
        let mut command = Command::new(binary("edgewise-runtime"));
        command
            .arg("simulate")
            .env("EDGEWISE_TOKEN", &plane.token)
            .args([
                "--server",
                &plane.url,
                "--group",
                group,
                "--prefix",
                prefix,
                "--count",
                &count.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir.join(format!("simulation-{prefix}")))
            .arg("--data")
            .arg(data)
            .args(["--window", "1s"])
            .args(args);
        let (child, _) = spawn_until(command, "simulating", "edgewise-runtime simulate");
        Simulator { child: Some(child) }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The shipped data file `name` (under `training/data`).
pub fn data_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../training/data")
        .join(name)
}

/// Kills a child process, if running, and reaps it.
pub(crate) fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits until `count` devices are online.
pub fn wait_online(plane: &ControlPlane, count: usize) {
    wait_for(
        &format!("{count} devices online"),
        Duration::from_secs(60),
        || {
            let devices = plane.get("/api/v1/devices");
            (devices
                .as_array()?
                .iter()
                .filter(|d| d["online"] == true)
                .count()
                == count)
                .then_some(())
        },
    );
}

/// Addresses the control plane printed.
#[derive(Clone, Default)]
pub struct Ports {
    /// HTTP `HOST:PORT`.
    pub http: String,
    /// MQTT `HOST:PORT`.
    pub mqtt: String,
    /// QUIC `HOST:PORT`.
    pub quic: String,
}

/// One HTTP call with an optional JSON body; returns the status and the JSON answer (Null if none).
pub fn http_json(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request)
}

/// Sends `request`; returns the status and the JSON answer (Null if none).
pub fn answer(request: reqwest::blocking::RequestBuilder) -> (u16, Value) {
    let response = request.send().expect("HTTP call");
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `GET url` as text.
pub fn text(url: &str) -> String {
    reqwest::blocking::get(url)
        .and_then(|r| r.text())
        .expect("GET")
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A device's reported state from the control plane.
pub fn reported(plane: &ControlPlane, device: &str) -> Value {
    plane.get(&format!("/api/v1/devices/{device}"))["reported"].clone()
}

/// Waits until `device`'s stored telemetry windows are each stored once with no gap
/// in their sequence numbers (a window may take a node's receipt timeout to be sent
/// again); fails showing the gap if that does not happen within 90 s.
pub fn assert_no_window_lost(plane: &ControlPlane, device: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let windows = plane.get(&format!("/api/v1/telemetry/windows?device={device}"));
        let mut seqs: Vec<u64> = windows
            .as_array()
            .expect("windows")
            .iter()
            .filter_map(|w| w["window"]["window_seq"].as_u64())
            .collect();
        seqs.sort_unstable();
        let first = seqs.first().copied().unwrap_or(1);
        let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
        if (!seqs.is_empty() && seqs == expected) || Instant::now() > deadline {
            assert!(!seqs.is_empty(), "{device} stored no window");
            assert_eq!(seqs, expected, "{device}: each window once, none lost");
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
