//! Shared fixtures: a trained, signed digits bundle and a runtime process on an
//! ephemeral port that is killed when dropped. Each test binary uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgewise_core::keys::SecretKey;
use edgewise_core::spec::ModelSpec;
use edgewise_training::data::{DataOptions, LabelColumn};
use edgewise_training::pipeline::{TrainRequest, run};
use edgewise_training::trainer::TrainConfig;
use indicatif::ProgressBar;

/// Files of the shared fixture.
pub struct Fixture {
    /// Folder holding everything below (kept for the whole test run).
    pub dir: PathBuf,
    /// The signed digits bundle.
    pub bundle: PathBuf,
    /// The release secret key that signed it.
    pub key: SecretKey,
    /// Its public key file.
    pub trusted: PathBuf,
    /// A public key file that signed nothing.
    pub stranger: PathBuf,
}

/// Trains the digits MLP once per test binary.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let key = SecretKey::generate();
        let (_, trusted) = key.save(&dir.join("release")).expect("save key");
        let (_, stranger) = SecretKey::generate()
            .save(&dir.join("stranger"))
            .expect("save key");
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../training/data/digits.csv.gz");
        let request = TrainRequest {
            data,
            data_options: DataOptions {
                label: LabelColumn::Last,
                features: Vec::new(),
                rows: None,
            },
            spec: ModelSpec::preset("digits-mlp").expect("preset"),
            name: "digits".to_string(),
            version: 3,
            config: TrainConfig {
                epochs: 15,
                batch_size: 32,
                learning_rate: 1e-3,
                seed: 1,
                patience: 5,
            },
            validation_fraction: 0.1,
            test_fraction: 0.2,
            source_revision: None,
            training_job: None,
            parent_version: None,
        };
        let outcome = run(&request, &key, &ProgressBar::hidden()).expect("train");
        let bundle = dir.join("digits.bundle");
        std::fs::write(&bundle, &outcome.bundle).expect("write bundle");
        Fixture {
            dir,
            bundle,
            key,
            trusted,
            stranger,
        }
    })
}

/// `edgewise-runtime serve` of `bundle` trusting `trust`, on the CPU and a free port.
fn serve_command(bundle: &Path, trust: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgewise-runtime"));
    command
        .arg("serve")
        .arg("--bundle")
        .arg(bundle)
        .arg("--trust")
        .arg(trust)
        .args(["--listen", "127.0.0.1:0", "--device", "cpu"]);
    command
}

/// A running `edgewise-runtime serve`, killed on drop.
pub struct Runtime {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Runtime {
    /// Starts the runtime with `extra` arguments after the bundle and trust flags,
    /// and waits until it listens.
    pub fn start(bundle: &Path, trust: &Path, extra: &[&str]) -> Runtime {
        let mut child = serve_command(bundle, trust)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start edgewise-runtime");
        let stdout = child.stdout.take().expect("stdout");
        // Owned from here on, so a panic below still kills the process.
        let mut runtime = Runtime {
            child,
            url: String::new(),
        };
        let (lines, line) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(text);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let text = line
                .recv_timeout(remaining)
                .expect("the runtime prints its address");
            if let Some((_, address)) = text.split_once(" at ") {
                runtime.url = address.trim().to_string();
                return runtime;
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the runtime on a bundle expected to be refused; returns its exit output.
pub fn serve_expecting_exit(bundle: &Path, trust: &Path) -> Output {
    let mut child = serve_command(bundle, trust)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgewise-runtime");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the runtime kept running on a bundle it should refuse");
}
