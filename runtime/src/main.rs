//! `edgewise-runtime`: the node agent's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use edgewise_core::keys::TrustStore;
use edgewise_core::node_config::NodeConfig;
use edgewise_model::DeviceChoice;
use edgewise_runtime::agent::link::{Link, say_goodbye};
use edgewise_runtime::agent::telemetry::run as telemetry_loop;
use edgewise_runtime::agent::{Agent, AgentOptions, DEFAULT_MIN_FREE_DISK};
use edgewise_runtime::batcher::BatchingConfig;
use edgewise_runtime::loader::{load_bundle, start_serving};
use edgewise_runtime::observe::{CaptureConfig, DEFAULT_MAX_IDS, Recorder};
use edgewise_runtime::server::{AppState, ServingSlot, router};
use edgewise_runtime::simulate::{Replay, SimulationOptions, run as simulation};
use edgewise_runtime::telemetry;
use tokio::sync::watch;

/// Serve signed Edgewise models over the Open Inference Protocol.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify one bundle, run its self-test, and serve it (standalone, no control plane).
    Serve {
        /// The signed bundle file.
        #[arg(long)]
        bundle: PathBuf,
        /// Trusted release public key files (`.pub`); repeat for several.
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
        #[command(flatten)]
        serving: ServingArgs,
    },
    /// Join a fleet: follow the signed assignments of the control plane named in the
    /// node config, and serve what they say.
    Run {
        /// The node config written by `edgewise device add`.
        #[arg(long)]
        config: PathBuf,
        /// The node's data folder (default: `<device id>-data` beside the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// How often a telemetry window closes.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// Share of predictions captured for retraining, in [0, 1].
        #[arg(long, default_value_t = 0.05)]
        capture_rate: f64,
        /// Bytes of disk an update must leave free; updates that would leave less are
        /// refused and the serving model stays.
        #[arg(long, default_value_t = DEFAULT_MIN_FREE_DISK)]
        min_free_disk: u64,
        #[command(flatten)]
        serving: ServingArgs,
    },
    /// Run N virtual nodes in one process, fed by replaying a CSV file: each with its
    /// own device registration, MQTT session, QUIC downloads, inference and telemetry.
    Simulate(SimulateArgs),
}

/// `simulate` options.
#[derive(Args)]
struct SimulateArgs {
    /// The control plane's URL (devices are registered through its API).
    #[arg(long, env = "EDGEWISE_SERVER", default_value = "http://127.0.0.1:8700")]
    server: String,
    /// An API token with the operator or admin role (devices are registered with it).
    #[arg(long, env = "EDGEWISE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The group the nodes join.
    #[arg(long)]
    group: String,
    /// How many nodes.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Device id prefix (ids are PREFIX-000, PREFIX-001, …).
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// How many of the nodes (the first) are labelled canary=true.
    #[arg(long, default_value_t = 0)]
    canaries: usize,
    /// Folder for node configs and node data (kept between runs).
    #[arg(long, default_value = "edgewise-simulation")]
    data_dir: PathBuf,
    /// The CSV file to replay (gzip if it ends in .gz).
    #[arg(long)]
    data: PathBuf,
    /// The label column: a header name, or `last`.
    #[arg(long, default_value = "last")]
    label: String,
    /// Rows to replay, START..END (counted after the header).
    #[arg(long, default_value = "0..18446744073709551615", value_parser = parse_range)]
    rows: std::ops::Range<usize>,
    /// Requests per second per node.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Pick rows at random instead of in order.
    #[arg(long)]
    shuffle: bool,
    /// Standard deviation of Gaussian noise added to every feature.
    #[arg(long, default_value_t = 0.0)]
    noise: f32,
    /// Add a value to a feature, FEATURE=DELTA; repeat for several.
    #[arg(long = "shift", value_parser = parse_shift)]
    shifts: Vec<(String, f32)>,
    /// Send each row's true label back as feedback.
    #[arg(long)]
    feedback: bool,
    /// Send each label this long after its prediction (e.g. 5s).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, requires = "feedback")]
    label_delay: Duration,
    /// Share of predictions captured for retraining, in [0, 1].
    #[arg(long, default_value_t = 0.05)]
    capture_rate: f64,
    /// Most captured predictions per node and window.
    #[arg(long, default_value_t = 32)]
    capture_per_window: usize,
    /// Fault injection: VERSION:DELAY adds DELAY (e.g. 20ms) to every request that
    /// version serves.
    #[arg(long, value_parser = parse_slow)]
    slow_version: Option<(u64, Duration)>,
    /// How often each node closes a telemetry window.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Where the models run.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

fn parse_range(text: &str) -> Result<std::ops::Range<usize>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} must be START..END"))?;
    let start = start
        .parse()
        .map_err(|_| format!("{start:?} is not a row number"))?;
    let end = if end.is_empty() {
        usize::MAX
    } else {
        end.parse()
            .map_err(|_| format!("{end:?} is not a row number"))?
    };
    Ok(start..end)
}

fn parse_shift(text: &str) -> Result<(String, f32), String> {
    let (name, delta) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?} must be FEATURE=DELTA"))?;
    Ok((
        name.to_owned(),
        delta
            .parse()
            .map_err(|_| format!("{delta:?} is not a number"))?,
    ))
}

fn parse_slow(text: &str) -> Result<(u64, Duration), String> {
    let (version, delay) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} must be VERSION:DELAY"))?;
    let version = version
        .parse()
        .map_err(|_| format!("{version:?} is not a version number"))?;
    Ok((
        version,
        humantime::parse_duration(delay).map_err(|e| format!("{delay:?}: {e}"))?,
    ))
}

/// How the model is served, in both modes.
#[derive(Args, Clone)]
struct ServingArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the model runs: cpu, gpu, or auto (the faster, never a software GPU).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Most examples the dynamic batcher joins into one batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    max_batch_size: u16,
    /// Longest wait, in microseconds, for more requests to join a batch. 0 (as in
    /// Triton) still joins the requests that queued while the last batch ran.
    #[arg(long, default_value_t = 0)]
    max_queue_delay_us: u64,
    /// Most requests waiting for the model before new ones get 503.
    #[arg(long, default_value_t = 4096)]
    max_queue_len: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
}

impl ServingArgs {
    fn batching(&self) -> BatchingConfig {
        BatchingConfig {
            max_batch_size: usize::from(self.max_batch_size),
            max_queue_delay: Duration::from_micros(self.max_queue_delay_us),
            max_queue_len: self.max_queue_len,
        }
    }
}

/// mimalloc rather than glibc's malloc, whose per-thread arenas held twice the memory
/// under a fleet's load (docs/benchmarks.md, fleet scale).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Fault injection for the end-to-end fault tests (FAILPOINTS=agent::verify=sleep(60000)).
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match Cli::parse().command {
        Command::Serve {
            bundle,
            trust,
            serving,
        } => runtime.block_on(serve(bundle, trust, serving)),
        Command::Simulate(args) => runtime.block_on(simulate(args)),
        Command::Run {
            config,
            data_dir,
            window,
            capture_rate,
            min_free_disk,
            serving,
        } => {
            let capture = CaptureConfig {
                sample_rate: capture_rate.clamp(0.0, 1.0),
                ..CaptureConfig::default()
            };
            runtime.block_on(run(
                config,
                data_dir,
                window,
                capture,
                min_free_disk,
                serving,
            ))
        }
    }
}

/// Standalone mode: one verified bundle.
async fn serve(bundle: PathBuf, trust: Vec<PathBuf>, serving: ServingArgs) -> Result<()> {
    let metrics = telemetry::prometheus().map_err(|err| anyhow!("metrics: {err}"))?;
    let trust = TrustStore::from_files(&trust).context("cannot read the trusted keys")?;
    let batching = serving.batching();
    let loaded = load_bundle(&bundle, &trust, serving.device, batching.max_batch_size)
        .with_context(|| format!("refusing to serve {}", bundle.display()))?;
    for timing in &loaded.timings {
        tracing::info!(
            device = %timing.description,
            batch = batching.max_batch_size,
            micros = timing.batch_latency.as_secs_f64() * 1e6,
            "device timing"
        );
    }
    let device_name = loaded.predictor.device().description.clone();
    let model = start_serving(loaded, batching).context("cannot start the inference thread")?;
    tracing::info!(model = %model.info.name, version = %model.info.version, device = %device_name, "bundle verified, self-test passed");
    let banner = format!(
        "serving {} version {} on {device_name}",
        model.info.name, model.info.version
    );
    let slot = ServingSlot::new();
    slot.install(model);
    let listener = bind(serving.listen).await?;
    println!("{banner} at http://{}", listener.local_addr()?);
    let recorder = Recorder::new(DEFAULT_MAX_IDS, CaptureConfig::default());
    http(
        listener,
        AppState::new(slot, metrics, recorder),
        serving.max_body_bytes,
        shutdown_signal(),
    )
    .await
}

/// Simulation mode: many virtual nodes in this process.
async fn simulate(args: SimulateArgs) -> Result<()> {
    telemetry::prometheus().map_err(|err| anyhow!("metrics: {err}"))?;
    let replay = Replay::load(&args.data, &args.label, args.rows.clone())?;
    tracing::info!(rows = replay.len(), "replay data loaded");
    let options = SimulationOptions {
        server: args.server,
        token: args.token,
        group: args.group,
        prefix: args.prefix,
        count: args.count,
        canaries: args.canaries,
        data_dir: args.data_dir.clone(),
        rate: args.rate,
        shuffle: args.shuffle,
        noise: args.noise,
        shift: args.shifts.into_iter().collect(),
        feedback: args.feedback,
        label_delay: args.label_delay,
        capture: CaptureConfig {
            sample_rate: args.capture_rate.clamp(0.0, 1.0),
            max_per_window: args.capture_per_window,
            ..CaptureConfig::default()
        },
        slow_version: args.slow_version,
        window: args.window,
        agent: AgentOptions {
            data_dir: args.data_dir,
            device: args.device,
            batching: BatchingConfig {
                max_batch_size: 64,
                max_queue_delay: Duration::ZERO,
                max_queue_len: 1024,
            },
            shared: None,
            min_free_disk: DEFAULT_MIN_FREE_DISK,
        },
    };
    tokio::select! {
        result = simulation(options, std::sync::Arc::new(replay)) => Ok(result?),
        () = shutdown_signal() => Ok(()),
    }
}

/// Agent mode: serve the stored model at once, then follow the control plane.
async fn run(
    config_path: PathBuf,
    data_dir: Option<PathBuf>,
    window: Duration,
    capture: CaptureConfig,
    min_free_disk: u64,
    serving: ServingArgs,
) -> Result<()> {
    let metrics = telemetry::prometheus().map_err(|err| anyhow!("metrics: {err}"))?;
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read node config {}", config_path.display()))?;
    let config = NodeConfig::from_toml(&text)
        .map_err(|e| anyhow!("node config {}: {e}", config_path.display()))?;
    let data_dir = data_dir.unwrap_or_else(|| {
        config_path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("{}-data", config.device_id))
    });
    let slot = ServingSlot::new();
    let options = AgentOptions {
        data_dir,
        device: serving.device,
        batching: serving.batching(),
        shared: None,
        min_free_disk,
    };
    let (agent, reports) = Agent::new(&config, options, slot.clone())?;
    let listener = bind(serving.listen).await?;
    let restored = agent.restore().await;
    match &restored {
        Some(version) => println!(
            "node {} serving {} version {} at http://{}",
            config.device_id,
            version.model,
            version.version,
            listener.local_addr()?
        ),
        None => println!(
            "node {} waiting for its first assignment at http://{}",
            config.device_id,
            listener.local_addr()?
        ),
    }
    let link =
        Link::new(&config.device_id, &config.mqtt).map_err(|e| anyhow!("node config: {e}"))?;
    let publisher = link.publisher();
    let recorder = Recorder::new(DEFAULT_MAX_IDS, capture);
    let store = agent.store();
    let (desired_tx, desired_rx) = watch::channel(None);
    tokio::spawn(link.run(store.clone(), desired_tx, reports));
    tokio::spawn(telemetry_loop(
        config.device_id.clone(),
        store,
        recorder.clone(),
        publisher.clone(),
        window,
    ));
    tokio::spawn(agent.run(desired_rx));
    http(
        listener,
        AppState::new(slot, metrics, recorder),
        serving.max_body_bytes,
        shutdown_signal(),
    )
    .await?;
    say_goodbye(&publisher).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Serves the HTTP API until `shutdown` resolves, letting in-flight requests finish.
async fn http(
    listener: tokio::net::TcpListener,
    state: AppState,
    max_body_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // One router for every connection: serving the `Router` itself would rebuild
    // every route for each new connection.
    let app = router(state, max_body_bytes).into_make_service();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("server stopped")
}

/// Resolves on Ctrl-C or SIGTERM (systemd, Kubernetes), so in-flight requests finish.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
