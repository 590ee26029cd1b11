//! `edgewise-train`: train, sign, verify and inspect model bundles.

mod engine;

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use edgewise_core::bundle::{Bundle, sha256_hex};
use edgewise_core::keys::{SecretKey, TrustStore};
use edgewise_core::spec::ModelSpec;
use edgewise_training::data::{DataOptions, LabelColumn};
use edgewise_training::pipeline::{TrainRequest, run};
use edgewise_training::trainer::TrainConfig;
use edgewise_training::{evaluate, report};
use indicatif::{ProgressBar, ProgressStyle};

/// Train, sign, verify and inspect Edgewise model bundles.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier on a CSV file and write a signed bundle.
    Train(Box<TrainArgs>),
    /// Create a release signing key pair: PREFIX.key and PREFIX.pub.
    Keygen {
        /// Path prefix of the two key files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign (or re-sign) a bundle with a release key.
    Sign {
        /// The bundle file.
        bundle: PathBuf,
        /// Secret key file (from `keygen`).
        #[arg(long)]
        signing_key: PathBuf,
        /// Where to write the signed bundle (default: in place).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a bundle's signature and weights against trusted public keys.
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        /// Trusted public key files (`.pub`); repeat for several.
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
    },
    /// Score a bundle on a labelled CSV file; prints JSON (examples, accuracy, macro F1).
    Evaluate {
        /// The bundle file.
        bundle: PathBuf,
        /// CSV or CSV.gz data file with the model's feature columns by name.
        #[arg(long)]
        data: PathBuf,
        /// Label column name, or `last`.
        #[arg(long, default_value = "last")]
        label: String,
        /// Rows to score, `START..END` (END excluded), counted after the header.
        #[arg(long, value_parser = parse_rows)]
        rows: Option<Range<usize>>,
    },
    /// Write a dense bundle's network as JSON (weights, normalisation, labels, self-test
    /// vectors), to rebuild it in another runtime such as ONNX Runtime.
    Export {
        /// The bundle file.
        bundle: PathBuf,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time a bundle's predictions on this machine (normalisation, forward pass,
    /// softmax); prints JSON with the median and p99 per batch size.
    Bench {
        /// The bundle file.
        bundle: PathBuf,
        /// `cpu`, `gpu` or `auto`.
        #[arg(long, default_value = "cpu")]
        device: edgewise_model::DeviceChoice,
        /// `serving` (what the runtime runs) or `burn` (burn's general path only).
        #[arg(long, value_enum, default_value = "serving")]
        path: engine::EnginePath,
        /// Batch sizes to time (repeat the flag).
        #[arg(long = "batch", default_values_t = [1usize, 64])]
        batches: Vec<usize>,
        /// Batches timed per batch size.
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
    },
    /// Summarise a bundle: name, version, spec, metrics, profile, signer.
    Inspect {
        /// The bundle file.
        bundle: PathBuf,
        /// Print the manifest as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// CSV or CSV.gz data file.
    #[arg(long)]
    data: PathBuf,
    /// Label column name, or `last`.
    #[arg(long, default_value = "last")]
    label: String,
    /// Feature columns by name, comma separated (default: every other named column).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    /// Rows to use, `START..END` (END excluded), counted after the header.
    #[arg(long, value_parser = parse_rows)]
    rows: Option<Range<usize>>,
    /// Model spec: a JSON file, or a preset (digits-mlp, digits-cnn, rainfall-mlp).
    #[arg(long)]
    spec: String,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed for the split, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop after this many epochs without a lower validation loss.
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Share of rows held out for validation.
    #[arg(long, default_value_t = 0.1)]
    validation_fraction: f64,
    /// Share of rows held out for the test report.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Model name (default: the data file's name without extensions).
    #[arg(long)]
    name: Option<String>,
    /// Model version.
    #[arg(long, default_value_t = 1)]
    version: u64,
    /// Output folder for the bundle.
    #[arg(long)]
    out: PathBuf,
    /// Release secret key file that signs the bundle.
    #[arg(long)]
    signing_key: PathBuf,
    /// Source revision recorded in the lineage (e.g. a git commit).
    #[arg(long, env = "EDGEWISE_SOURCE_REVISION")]
    source_revision: Option<String>,
    /// The orchestrating training job, recorded in the lineage.
    #[arg(long)]
    training_job: Option<String>,
    /// The version this one is retrained from, recorded in the lineage.
    #[arg(long)]
    parent_version: Option<u64>,
}

fn parse_rows(value: &str) -> Result<Range<usize>, String> {
    let (start, end) = value
        .split_once("..")
        .ok_or_else(|| format!("expected START..END, got {value:?}"))?;
    let start: usize = start
        .trim()
        .parse()
        .map_err(|_| format!("START must be a row number, got {start:?}"))?;
    let end: usize = end
        .trim()
        .parse()
        .map_err(|_| format!("END must be a row number, got {end:?}"))?;
    if end <= start {
        return Err(format!("END ({end}) must be greater than START ({start})"));
    }
    Ok(start..end)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Train(args) => train(*args),
        Command::Keygen { out } => {
            let key = SecretKey::generate();
            let (secret, public) = key.save(&out)?;
            println!("key id {}", key.key_id());
            println!("secret key  {}", secret.display());
            println!("public key  {}", public.display());
            Ok(())
        }
        Command::Sign {
            bundle,
            signing_key,
            out,
        } => {
            let key = SecretKey::load(&signing_key)?;
            let signed = Bundle::read(&bundle)?.resign(&key)?;
            let target = out.unwrap_or(bundle);
            write_file(&target, &signed)?;
            println!("signed {} with key {}", target.display(), key.key_id());
            Ok(())
        }
        Command::Verify { bundle, trust } => {
            let trust = TrustStore::from_files(&trust)?;
            let opened = Bundle::read(&bundle)?;
            opened
                .verify(&trust)
                .with_context(|| format!("{} failed verification", bundle.display()))?;
            println!(
                "OK: {} version {} signed by trusted key {}; weights sha256 {} verified",
                opened.manifest.name,
                opened.manifest.version,
                opened.manifest.signer_key_id,
                opened.manifest.weights.sha256
            );
            Ok(())
        }
        Command::Evaluate {
            bundle,
            data,
            label,
            rows,
        } => {
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let score = evaluate::score(&bytes, &data, label_column(&label), rows)
                .with_context(|| format!("cannot score {}", bundle.display()))?;
            println!("{}", serde_json::to_string(&score)?);
            Ok(())
        }
        Command::Export { bundle, out } => {
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let exported = serde_json::to_string(&engine::export(&bytes)?)?;
            match out {
                Some(path) => std::fs::write(&path, exported)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => println!("{exported}"),
            }
            Ok(())
        }
        Command::Bench {
            bundle,
            device,
            path,
            batches,
            iterations,
        } => {
            if iterations == 0 || batches.contains(&0) {
                bail!("--iterations and every --batch must be at least 1");
            }
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let report = engine::bench(&bytes, device, path, &batches, iterations)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Inspect { bundle, json } => {
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let opened = Bundle::open(&bytes)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&opened.manifest)?);
            } else {
                println!(
                    "bundle          {} (sha256 {})",
                    bundle.display(),
                    sha256_hex(&bytes)
                );
                let signer = opened.signature.as_ref().map(|sig| sig.key_id.as_str());
                print!("{}", report::inspect(&opened.manifest, signer));
            }
            Ok(())
        }
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let spec = load_spec(&args.spec)?;
    let key = SecretKey::load(&args.signing_key)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.data));
    let request = TrainRequest {
        data: args.data.clone(),
        data_options: DataOptions {
            label: label_column(&args.label),
            features: args.features.clone(),
            rows: args.rows.clone(),
        },
        spec,
        name,
        version: args.version,
        config: TrainConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            seed: args.seed,
            patience: args.patience,
        },
        validation_fraction: args.validation_fraction,
        test_fraction: args.test_fraction,
        source_revision: args.source_revision.clone(),
        training_job: args.training_job.clone(),
        parent_version: args.parent_version,
    };
    let progress = ProgressBar::new(args.epochs as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    progress.set_prefix(format!("training {}", request.name));
    let outcome = run(&request, &key, &progress)?;
    progress.finish_and_clear();

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join(format!(
        "{}-v{}.bundle",
        outcome.manifest.name, outcome.manifest.version
    ));
    write_file(&path, &outcome.bundle)?;
    print!("{}", report::training_report(&outcome.manifest));
    println!("bundle          {}", path.display());
    println!("bundle sha256   {}", sha256_hex(&outcome.bundle));
    println!("weights sha256  {}", outcome.manifest.weights.sha256);
    println!("signed by       {}", outcome.manifest.signer_key_id);
    if let Ok(uri) = std::env::var("MLFLOW_TRACKING_URI") {
        let logged = log_to_mlflow(&uri, &outcome.manifest, &path, &outcome.bundle)
            .with_context(|| format!("cannot log the run to MLflow at {uri}"))?;
        println!(
            "mlflow          run {} registered as {} version {}",
            logged.run_id, outcome.manifest.name, logged.model_version
        );
    }
    Ok(())
}

/// Logs the run (params, per-epoch loss, test metrics, the bundle) to MLflow and
/// registers the bundle as a version of the model, tagged with its sha256.
fn log_to_mlflow(
    uri: &str,
    manifest: &edgewise_core::manifest::Manifest,
    bundle_path: &Path,
    bundle: &[u8],
) -> Result<edgewise_mlflow::LoggedRun> {
    let lineage = &manifest.lineage;
    let h = &lineage.hyperparameters;
    let mut params: Vec<(String, String)> = [
        ("epochs", h.epochs.to_string()),
        ("batch_size", h.batch_size.to_string()),
        ("learning_rate", h.learning_rate.to_string()),
        ("seed", h.seed.to_string()),
        ("patience", h.patience.to_string()),
        ("validation_fraction", h.validation_fraction.to_string()),
        ("test_fraction", h.test_fraction.to_string()),
        ("dataset", lineage.dataset.clone()),
        ("dataset_sha256", lineage.dataset_sha256.clone()),
        ("rows", lineage.rows.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    if let Some(parent) = lineage.parent_version {
        params.push(("parent_version".to_owned(), parent.to_string()));
    }
    let mut tags = vec![
        ("mlflow.source.name".to_owned(), "edgewise-train".to_owned()),
        (
            edgewise_mlflow::EDGEWISE_VERSION_TAG.to_owned(),
            manifest.version.to_string(),
        ),
        ("signer_key_id".to_owned(), manifest.signer_key_id.clone()),
    ];
    if let Some(job) = &lineage.training_job {
        tags.push(("training_job".to_owned(), job.clone()));
    }
    let experiment =
        std::env::var("MLFLOW_EXPERIMENT_NAME").unwrap_or_else(|_| "edgewise".to_owned());
    let file = bundle_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.bundle".to_owned());
    let client = edgewise_mlflow::Client::new(uri)?;
    Ok(client.log_training(&edgewise_mlflow::TrainingRun {
        experiment: &experiment,
        run_name: &format!("{}-v{}", manifest.name, manifest.version),
        model: &manifest.name,
        params,
        epoch_metrics: vec![("loss".to_owned(), lineage.metrics.epoch_losses.clone())],
        metrics: vec![
            ("test_accuracy".to_owned(), lineage.metrics.test_accuracy),
            ("macro_f1".to_owned(), lineage.metrics.macro_f1),
            (
                "validation_accuracy".to_owned(),
                lineage.metrics.validation_accuracy,
            ),
            ("best_epoch".to_owned(), lineage.metrics.best_epoch as f64),
        ],
        tags,
        bundle_file: &file,
        bundle,
        bundle_sha256: &sha256_hex(bundle),
    })?)
}

fn label_column(name: &str) -> LabelColumn {
    match name {
        "last" => LabelColumn::Last,
        other => LabelColumn::Named(other.to_string()),
    }
}

fn load_spec(value: &str) -> Result<ModelSpec> {
    if let Some(preset) = ModelSpec::preset(value) {
        return Ok(preset);
    }
    let path = Path::new(value);
    if !path.exists() {
        bail!(
            "--spec {value:?} is neither a file nor a preset (presets: {})",
            ModelSpec::PRESETS.join(", ")
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {value}"))?;
    ModelSpec::from_json(&text).with_context(|| format!("spec {value}"))
}

fn default_name(data: &Path) -> String {
    let file = data
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    file.split('.').next().unwrap_or("model").to_string()
}

/// Writes through a temporary file and a rename, so a reader never sees half a bundle.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}
