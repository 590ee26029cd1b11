//! The fleet simulator (`edgewise-runtime simulate`): N virtual nodes in one process.
//! Each is a real node in all but its HTTP listener: its own device registration and
//! MQTT session, its own update agent with real QUIC downloads, verification and
//! inference, its own telemetry windows and outbox. They are fed by replaying rows of
//! a CSV file at a set rate, optionally shuffled, shifted or noisy, with the true
//! labels sent back as feedback.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgewise_core::node_config::NodeConfig;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use thiserror::Error;
use tokio::sync::watch;

use crate::agent::link::Link;
use crate::agent::{Agent, AgentOptions, SharedResources};
use crate::loader::SharedModels;
use crate::observe::{CaptureConfig, DEFAULT_MAX_IDS, Recorder};
use crate::server::{ServingModel, ServingSlot, best_classes};

/// Page cache of the database all virtual nodes share.
const SHARED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Errors of the simulator's setup.
#[derive(Debug, Error)]
pub enum SimulateError {
    /// The replay data could not be read.
    #[error("replay data {path}: {reason}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A device could not be registered.
    #[error("registering {device}: {reason}")]
    Register {
        /// The device.
        device: String,
        /// What the control plane said.
        reason: String,
    },
    /// A node could not start.
    #[error("node {device}: {reason}")]
    Node {
        /// The device.
        device: String,
        /// What failed.
        reason: String,
    },
}

/// Replay data: named feature columns and a label per row.
pub struct Replay {
    columns: Vec<String>,
    rows: Vec<Vec<f32>>,
    labels: Vec<String>,
}

impl Replay {
    /// Reads a CSV file (gzip if it ends in `.gz`), keeping rows `range`. The label is
    /// the column named `label_column`, or the last one for `last`. A header is
    /// recognised when a field is not a number; unnamed columns (an index) are dropped.
    pub fn load(
        path: &Path,
        label_column: &str,
        range: std::ops::Range<usize>,
    ) -> Result<Self, SimulateError> {
        let error = |reason: String| SimulateError::Data {
            path: path.to_owned(),
            reason,
        };
        let mut text = String::new();
        let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
        if path.extension().is_some_and(|ext| ext == "gz") {
            flate2::read::GzDecoder::new(file).read_to_string(&mut text)
        } else {
            std::io::BufReader::new(file).read_to_string(&mut text)
        }
        .map_err(|e| error(e.to_string()))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes());
        let mut records = reader.records();
        let first = records
            .next()
            .ok_or_else(|| error("the file is empty".into()))?
            .map_err(|e| error(e.to_string()))?;
        let has_header = first
            .iter()
            .any(|field| !field.is_empty() && field.trim().parse::<f64>().is_err());
        let names: Vec<String> = if has_header {
            first.iter().map(str::to_owned).collect()
        } else {
            (0..first.len()).map(|i| format!("x{i}")).collect()
        };
        let label_index = if label_column == "last" {
            names.len().saturating_sub(1)
        } else {
            names
                .iter()
                .position(|n| n == label_column)
                .ok_or_else(|| error(format!("no column named {label_column:?}")))?
        };
        let keep: Vec<usize> = (0..names.len())
            .filter(|&i| i != label_index && !names[i].is_empty())
            .collect();
        let data = if has_header { None } else { Some(Ok(first)) };
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (index, record) in data.into_iter().chain(records).enumerate() {
            if index >= range.end {
                break;
            }
            let record = record.map_err(|e| error(e.to_string()))?;
            if index < range.start {
                continue;
            }
            let values: Result<Vec<f32>, _> = keep
                .iter()
                .map(|&i| record.get(i).unwrap_or("").trim().parse::<f32>())
                .collect();
            rows.push(values.map_err(|_| error(format!("row {index} holds a non-number")))?);
            labels.push(record.get(label_index).unwrap_or("").trim().to_owned());
        }
        if rows.is_empty() {
            return Err(error(format!("no rows in {range:?}")));
        }
        Ok(Replay {
            columns: keep.iter().map(|&i| names[i].clone()).collect(),
            rows,
            labels,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// How the virtual nodes behave.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    /// The control plane's HTTP base URL.
    pub server: String,
    /// An API token with the operator or admin role, to register the devices.
    pub token: Option<String>,
    /// The group the nodes join.
    pub group: String,
    /// Device id prefix; ids are `{prefix}-{index:03}`.
    pub prefix: String,
    /// How many nodes.
    pub count: usize,
    /// How many of them (the first) are labelled `canary=true`.
    pub canaries: usize,
    /// Where configs and node data live.
    pub data_dir: PathBuf,
    /// Requests per second per node.
    pub rate: f64,
    /// Pick rows at random instead of in order.
    pub shuffle: bool,
    /// Standard deviation of Gaussian noise added to every feature.
    pub noise: f32,
    /// Values added to named features.
    pub shift: BTreeMap<String, f32>,
    /// Send the true label back as feedback.
    pub feedback: bool,
    /// How long after its prediction each label is sent (labels arrive late in the
    /// field: a rain gauge reads tomorrow).
    pub label_delay: Duration,
    /// Which predictions are captured for retraining.
    pub capture: CaptureConfig,
    /// Fault injection: extra latency for requests served by a version.
    pub slow_version: Option<(u64, Duration)>,
    /// Telemetry window length.
    pub window: Duration,
    /// Agent settings for every node.
    pub agent: AgentOptions,
}

/// Nodes registered and started at once.
const PARALLEL_STARTS: usize = 16;

/// Registers (or reuses) the devices and runs the nodes until the process ends.
pub async fn run(options: SimulationOptions, replay: Arc<Replay>) -> Result<(), SimulateError> {
    let setup_error = |reason: String| SimulateError::Node {
        device: "-".into(),
        reason,
    };
    std::fs::create_dir_all(&options.data_dir).map_err(|e| setup_error(e.to_string()))?;
    let shared = SharedResources {
        db: crate::agent::store::open_database(
            &options.data_dir.join("nodes.db"),
            SHARED_CACHE_BYTES,
        )
        .map_err(|e| setup_error(e.to_string()))?,
        models: SharedModels::new(),
        bundle_checks: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
    };
    let http = reqwest::Client::new();
    let progress = ProgressBar::new(options.count as u64).with_style(
        ProgressStyle::with_template("starting nodes {bar:30} {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    futures_util::stream::iter(0..options.count)
        .map(Ok)
        .try_for_each_concurrent(PARALLEL_STARTS, |index| {
            let (http, options, replay, shared, progress) =
                (&http, &options, &replay, &shared, &progress);
            async move {
                let device = format!("{}-{index:03}", options.prefix);
                let config = register(http, options, &device, index < options.canaries).await?;
                start_node(options, config, replay.clone(), index as u64, shared).await?;
                progress.inc(1);
                Ok(())
            }
        })
        .await?;
    progress.finish_and_clear();
    println!(
        "simulating {} nodes in group {} against {}",
        options.count, options.group, options.server
    );
    std::future::pending::<()>().await;
    Ok(())
}

/// The node config of `device`: kept from an earlier run, or registered now.
async fn register(
    http: &reqwest::Client,
    options: &SimulationOptions,
    device: &str,
    canary: bool,
) -> Result<NodeConfig, SimulateError> {
    let error = |reason: String| SimulateError::Register {
        device: device.to_owned(),
        reason,
    };
    let path = options.data_dir.join(format!("{device}.toml"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        return NodeConfig::from_toml(&text).map_err(error);
    }
    let labels = if canary {
        json!({ "canary": "true" })
    } else {
        json!({})
    };
    let mut request = http
        .post(format!(
            "{}/api/v1/devices",
            options.server.trim_end_matches('/')
        ))
        .json(&json!({ "name": device, "group": options.group, "labels": labels }));
    if let Some(token) = &options.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| error(e.to_string()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| error(e.to_string()))?;
    if !status.is_success() {
        return Err(error(format!("{status}: {}", body["error"])));
    }
    let text = body["node_config"]
        .as_str()
        .ok_or_else(|| error("no node_config in the answer".into()))?;
    std::fs::write(&path, text).map_err(|e| error(e.to_string()))?;
    NodeConfig::from_toml(text).map_err(error)
}

/// Starts one virtual node: agent, MQTT link, telemetry and replay.
async fn start_node(
    options: &SimulationOptions,
    config: NodeConfig,
    replay: Arc<Replay>,
    seed: u64,
    shared: &SharedResources,
) -> Result<(), SimulateError> {
    let device = config.device_id.clone();
    let error = |reason: String| SimulateError::Node {
        device: device.clone(),
        reason,
    };
    let slot = ServingSlot::new();
    let agent_options = AgentOptions {
        data_dir: options.data_dir.join(&device),
        shared: Some(shared.clone()),
        ..options.agent.clone()
    };
    let (agent, reports) =
        Agent::new(&config, agent_options, slot.clone()).map_err(|e| error(e.to_string()))?;
    agent.restore().await;
    let link = Link::new(&device, &config.mqtt).map_err(error)?;
    let recorder = Recorder::new(DEFAULT_MAX_IDS, options.capture);
    let store = agent.store();
    let (desired_tx, desired_rx) = watch::channel(None);
    let publisher = link.publisher();
    tokio::spawn(link.run(store.clone(), desired_tx, reports));
    tokio::spawn(crate::agent::telemetry::run(
        device.clone(),
        store,
        recorder.clone(),
        publisher,
        options.window,
    ));
    tokio::spawn(agent.run(desired_rx));
    tokio::spawn(replay_loop(
        options.clone(),
        replay,
        slot,
        recorder,
        device,
        seed,
    ));
    Ok(())
}

/// A small seeded generator (xorshift64*), enough to pick rows and draw noise.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

/// Feeds one node: a row every `1 / rate` seconds through whatever model it serves.
async fn replay_loop(
    options: SimulationOptions,
    replay: Arc<Replay>,
    slot: ServingSlot,
    recorder: Recorder,
    device: String,
    seed: u64,
) {
    let mut random =
        Random(0x9E37_79B9_7F4A_7C15 ^ (seed.wrapping_add(1)).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate.max(0.01)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_row = (seed as usize * 7919) % replay.len();
    let mut request = 0u64;
    let mut pending_labels: VecDeque<(Instant, String, String, String)> = VecDeque::new();
    loop {
        ticks.tick().await;
        while pending_labels
            .front()
            .is_some_and(|(due, ..)| *due <= Instant::now())
        {
            if let Some((_, model, id, label)) = pending_labels.pop_front() {
                let _ = recorder.feedback(&model, &id, &label);
            }
        }
        let Some(model) = slot.current() else {
            continue;
        };
        let row = if options.shuffle {
            (random.next() % replay.len() as u64) as usize
        } else {
            next_row
        };
        next_row = (next_row + 1) % replay.len();
        let Some(values) = example(&replay, row, &model, &options, &mut random) else {
            tracing::warn!(%device, "the replay data's columns do not match the model's features");
            continue;
        };
        request += 1;
        let id = format!("{device}-{request}");
        let started = Instant::now();
        if let Some((version, delay)) = options.slow_version
            && model.version == version
        {
            tokio::time::sleep(delay).await;
        }
        match model.batcher.predict(values.clone(), 1).await {
            Ok(probabilities) => {
                let classes = best_classes(&probabilities, model.info.labels.len());
                recorder.record_success(
                    &model,
                    Some(&id),
                    &values,
                    &classes,
                    started.elapsed().as_secs_f64(),
                );
                if let Some(shadow) = slot.shadow()
                    && let Ok(candidate) = shadow.batcher.predict(values.clone(), 1).await
                {
                    let shadow_classes = best_classes(&candidate, shadow.labels.len());
                    recorder.record_shadow(&model, shadow.version, &[shadow_classes == classes]);
                }
                if options.feedback {
                    pending_labels.push_back((
                        Instant::now() + options.label_delay,
                        model.info.name.clone(),
                        id,
                        replay.labels[row].clone(),
                    ));
                }
            }
            Err(_) => recorder.record_error(Some(&model), started.elapsed().as_secs_f64()),
        }
    }
}

/// Row `row` in the model's feature order, shifted and noisy as configured.
fn example(
    replay: &Replay,
    row: usize,
    model: &ServingModel,
    options: &SimulationOptions,
    random: &mut Random,
) -> Option<Vec<f32>> {
    model
        .info
        .features
        .iter()
        .map(|name| {
            let column = replay.columns.iter().position(|c| c == name)?;
            let shift = options.shift.get(name).copied().unwrap_or(0.0);
            let noise = if options.noise > 0.0 {
                options.noise * random.normal()
            } else {
                0.0
            };
            Some(replay.rows[row][column] + shift + noise)
        })
        .collect()
}
