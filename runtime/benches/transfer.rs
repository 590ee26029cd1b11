//! Bundle transfer benchmark: N concurrent downloads of one artifact from a running
//! control plane, over QUIC or the HTTP `Range` fallback, through the node's own
//! download code (`agent::download::fetch`). Each download goes to its own partial file
//! and is checked against the artifact's sha256 afterwards, outside the timed part.
//!
//! Prints one JSON line: transport, copies, bytes, wall seconds, aggregate MB/s
//! (MB = 10^6 bytes), per-download p50/p99/max seconds and the failures. A failed
//! download is counted and described, never a panic. `bench/transfer.sh` sets up the
//! control plane and runs this for every case.
//!
//! ```text
//! transfer --node-config node.toml --sha256 HEX --size BYTES --transport quic --copies 1000 --out DIR
//! ```
//!
//! `cargo bench` runs it with `--bench` and nothing else; without `--node-config` it
//! prints a one-line hint and exits 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use edgewise_core::bundle::sha256_hex;
use edgewise_core::node_config::NodeConfig;
use edgewise_runtime::agent::download::{self, DownloadSettings};

/// Distinct error messages kept in the report.
const MAX_ERRORS_REPORTED: usize = 5;

/// Which of the control plane's two artifact transports to download over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// The QUIC artifact server (`transfer.quic`).
    Quic,
    /// The HTTP `Range` fallback (`transfer.http` + `/api/v1/artifacts/{sha256}`).
    Http,
}

impl Transport {
    /// The name used in file names and the report.
    fn name(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Http => "http",
        }
    }
}

/// Concurrent bundle downloads from a running control plane.
#[derive(Debug, Parser)]
#[command(name = "transfer", about)]
struct Args {
    /// The node config (`edgewise device add --out`): CA, server name and addresses.
    #[arg(long)]
    node_config: Option<PathBuf>,
    /// The artifact's sha256 (hex), as `edgewise model push` reports it.
    #[arg(long)]
    sha256: Option<String>,
    /// The artifact's size in bytes.
    #[arg(long)]
    size: Option<u64>,
    /// Transport to download over.
    #[arg(long, value_enum, default_value = "quic")]
    transport: Transport,
    /// Concurrent downloads of the same artifact.
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Folder for the partial files (created; the files are removed after the check).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long = "bench", hide = true)]
    _bench: bool,
    /// Filters passed through `cargo bench -- ...`; ignored.
    #[arg(value_name = "FILTER", hide = true)]
    _filters: Vec<String>,
}

/// How one download ended.
struct Outcome {
    /// Seconds from its start to its last byte (or to the error).
    seconds: f64,
    /// Why it failed, if it did.
    error: Option<String>,
}

/// Parses the flags, runs the downloads and prints the report.
fn main() -> Result<()> {
    let args = Args::parse();
    let Some(node_config) = args.node_config.as_deref() else {
        println!(
            "transfer: nothing to do without --node-config; run bench/transfer.sh (it starts a control plane)"
        );
        return Ok(());
    };
    let sha256 = args
        .sha256
        .as_deref()
        .context("--sha256 is required with --node-config")?
        .to_ascii_lowercase();
    let size = args.size.context("--size is required with --node-config")?;
    let out = args
        .out
        .as_deref()
        .context("--out is required with --node-config")?;
    if args.copies == 0 {
        bail!("--copies must be at least 1");
    }
    let text = std::fs::read_to_string(node_config)
        .with_context(|| format!("cannot read {}", node_config.display()))?;
    let config = NodeConfig::from_toml(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{} is not a node config", node_config.display()))?;
    let quic = DownloadSettings::from_config(&config)
        .map_err(anyhow::Error::msg)
        .context("the node config's trust and transfer settings")?;
    let location = match args.transport {
        Transport::Quic => format!("quic://{}", config.transfer.quic),
        Transport::Http => format!(
            "{}/api/v1/artifacts/{sha256}",
            config.transfer.http.trim_end_matches('/')
        ),
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let partials: Vec<PathBuf> = (0..args.copies)
        .map(|index| out.join(format!("{}-{index}.part", args.transport.name())))
        .collect();
    // `fetch` resumes from whatever a partial file holds; every run starts from zero.
    for partial in &partials {
        remove_if_present(partial)?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (mut outcomes, wall) =
        runtime.block_on(download_all(&location, &quic, &sha256, size, &partials));
    drop(runtime);

    check_files(&partials, &sha256, size, &mut outcomes);
    for partial in &partials {
        remove_if_present(partial)?;
    }

    let failures = outcomes.iter().filter(|o| o.error.is_some()).count();
    let mut errors = BTreeMap::<String, usize>::new();
    for error in outcomes.iter().filter_map(|o| o.error.as_ref()) {
        *errors.entry(error.clone()).or_default() += 1;
    }
    let mut errors: Vec<(String, usize)> = errors.into_iter().collect();
    errors.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    errors.truncate(MAX_ERRORS_REPORTED);
    let mut seconds: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.error.is_none())
        .map(|o| o.seconds)
        .collect();
    seconds.sort_by(f64::total_cmp);
    let bytes = size * (args.copies - failures) as u64;
    let wall_s = wall.as_secs_f64();
    let mb_per_s = if wall_s > 0.0 {
        bytes as f64 / 1e6 / wall_s
    } else {
        0.0
    };
    let report = serde_json::json!({
        "transport": args.transport.name(),
        "copies": args.copies,
        "size": size,
        "bytes": bytes,
        "seconds": wall_s,
        "mb_per_s": mb_per_s,
        "p50_s": percentile(&seconds, 50.0),
        "p99_s": percentile(&seconds, 99.0),
        "max_s": seconds.last().copied(),
        "failures": failures,
        "errors": errors
            .into_iter()
            .map(|(message, count)| serde_json::json!({"count": count, "error": message}))
            .collect::<Vec<_>>(),
    });
    println!("{report}");
    Ok(())
}

/// Runs every download at once; returns each outcome and the wall time until the last ended.
async fn download_all(
    location: &str,
    quic: &DownloadSettings,
    sha256: &str,
    size: u64,
    partials: &[PathBuf],
) -> (Vec<Outcome>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = partials
        .iter()
        .map(|partial| {
            let (location, quic, sha256, partial) = (
                location.to_owned(),
                quic.clone(),
                sha256.to_owned(),
                partial.clone(),
            );
            tokio::spawn(async move {
                let begun = Instant::now();
                let result = download::fetch(&location, &quic, &sha256, size, &partial).await;
                let seconds = begun.elapsed().as_secs_f64();
                let error = match result {
                    Ok(moved) if moved.resumed_from != 0 || moved.bytes != size => Some(format!(
                        "moved {} bytes from offset {}, expected {size} from 0",
                        moved.bytes, moved.resumed_from
                    )),
                    Ok(_) => None,
                    Err(err) => Some(err.to_string()),
                };
                Outcome { seconds, error }
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|err| Outcome {
            seconds: started.elapsed().as_secs_f64(),
            error: Some(format!("download task failed: {err}")),
        }));
    }
    (outcomes, started.elapsed())
}

/// Marks as failed every download whose file is not the artifact (size, then sha256).
fn check_files(partials: &[PathBuf], sha256: &str, size: u64, outcomes: &mut [Outcome]) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = partials.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (files, outcomes) in partials
            .chunks(per_thread)
            .zip(outcomes.chunks_mut(per_thread))
        {
            scope.spawn(move || {
                for (partial, outcome) in files.iter().zip(outcomes.iter_mut()) {
                    if outcome.error.is_none() {
                        outcome.error = check_file(partial, sha256, size).err();
                    }
                }
            });
        }
    });
}

/// Whether one downloaded file holds exactly the artifact.
fn check_file(partial: &Path, sha256: &str, size: u64) -> Result<(), String> {
    let bytes = std::fs::read(partial).map_err(|e| format!("cannot read the download: {e}"))?;
    if bytes.len() as u64 != size {
        return Err(format!("downloaded {} bytes, expected {size}", bytes.len()));
    }
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(format!("downloaded sha256 {actual}, expected {sha256}"));
    }
    Ok(())
}

/// Nearest-rank percentile of sorted values; `None` when there are none.
fn percentile(sorted: &[f64], percent: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Removes a file; a missing one is fine.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}
