//! `edgewise-runtime`: the node agent's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use edgewise_core::keys::TrustStore;
use edgewise_model::DeviceChoice;
use edgewise_runtime::batcher::{Batcher, BatchingConfig};
use edgewise_runtime::loader::load_bundle;
use edgewise_runtime::server::{AppState, ModelInfo, router};
use edgewise_runtime::telemetry;

/// Serve signed Edgewise models over the Open Inference Protocol.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a bundle, run its self-test, and serve it.
    Serve {
        /// The signed bundle file.
        #[arg(long)]
        bundle: PathBuf,
        /// Trusted release public key files (`.pub`); repeat for several.
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
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
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve {
        bundle,
        trust,
        listen,
        device,
        max_batch_size,
        max_queue_delay_us,
        max_queue_len,
        max_body_bytes,
    } = Cli::parse().command;

    let trust = TrustStore::from_files(&trust).context("cannot read the trusted keys")?;
    let max_batch_size = usize::from(max_batch_size);
    let loaded = load_bundle(&bundle, &trust, device, max_batch_size)
        .with_context(|| format!("refusing to serve {}", bundle.display()))?;
    for timing in &loaded.timings {
        tracing::info!(
            device = %timing.description,
            batch = max_batch_size,
            micros = timing.batch_latency.as_secs_f64() * 1e6,
            "device timing"
        );
    }
    let manifest = &loaded.manifest;
    let device_name = loaded.predictor.device().description.clone();
    tracing::info!(model = %manifest.name, version = manifest.version, device = %device_name, "bundle verified, self-test passed");

    let metrics = telemetry::prometheus().map_err(|err| anyhow!("metrics: {err}"))?;
    let version = manifest.version.to_string();
    telemetry::describe_model(
        &manifest.name,
        &version,
        &device_name,
        &manifest.signer_key_id,
    );
    let info = ModelInfo {
        name: manifest.name.clone(),
        version,
        features: manifest.input.features.clone(),
        labels: manifest.output.labels.clone(),
    };
    let batcher = Batcher::start(
        loaded.predictor,
        BatchingConfig {
            max_batch_size,
            max_queue_delay: Duration::from_micros(max_queue_delay_us),
            max_queue_len,
        },
    )
    .context("cannot start the inference thread")?;
    let app = router(
        AppState::new(info.clone(), batcher, metrics),
        max_body_bytes,
    );

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        println!(
            "serving {} version {} on {} at http://{address}",
            info.name, info.version, device_name
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("server stopped")
    })
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
