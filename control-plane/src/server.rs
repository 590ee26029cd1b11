//! `edgewise serve`: opens the data folder, starts the embedded broker (or connects to
//! an external one), the QUIC artifact server and the HTTP API, and runs until SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::keyring::Keyring;
use crate::receipts::Receipts;
use anyhow::{Context, Result, anyhow, bail};

use crate::api::{self, AppState, Services};
use crate::artifacts::ArtifactStore;
use crate::aws::AwsTarget;
use crate::aws::s3::{S3Artifacts, S3Location};
use crate::datadir::DataDir;
use crate::deploy::Deployer;
use crate::fleet::{Endpoints, Fleet};
use crate::jobs::dataset::Datasets;
use crate::jobs::{JobSettings, Jobs};
use crate::monitor::alerts::AlertSettings;
use crate::monitor::{Monitor, MonitorOptions};
use crate::registry::Registry;
use crate::retraining::Retraining;
use crate::rollout::{self, Rollouts};
use crate::store::Store;
use crate::telemetry_store::TelemetryStore;
use crate::transfer::{self, ArtifactSource};
use crate::{broker, credentials, mqtt_link};
use edgewise_core::broker::{BrokerUrl, ClientTls};

/// Where the broker is.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// The embedded broker, listening on this address.
    Embedded(SocketAddr),
    /// An external broker (Mosquitto, AWS IoT Core, …).
    External(BrokerConnection),
}

/// A broker the control plane connects to (the embedded one, or an external one) and
/// how it proves itself there.
#[derive(Debug, Clone)]
pub struct BrokerConnection {
    /// `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
    pub url: BrokerUrl,
    /// PEM of the CA that signs the broker's certificate; nodes get it too.
    pub ca_pem: Option<String>,
    /// PEM of the control plane's client certificate, for brokers that authenticate by
    /// certificate (then no password is sent).
    pub client_certificate_pem: Option<String>,
    /// PEM of that certificate's private key.
    pub client_key_pem: Option<String>,
}

impl BrokerConnection {
    /// The TLS settings of an `mqtts://` broker.
    pub fn tls(&self) -> ClientTls<'_> {
        ClientTls {
            ca_pem: self.ca_pem.as_deref(),
            certificate_pem: self.client_certificate_pem.as_deref(),
            key_pem: self.client_key_pem.as_deref(),
        }
    }
}

/// Where bundle files are kept.
#[derive(Debug, Clone)]
pub enum ArtifactStoreChoice {
    /// The data folder's `artifacts/`.
    Local,
    /// An S3 bucket, cached in the data folder.
    S3 {
        /// Bucket and prefix.
        location: S3Location,
        /// Region and endpoint.
        aws: AwsTarget,
    },
}

/// The longest a presigned S3 URL may live (a SigV4 limit).
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Everything `edgewise serve` is told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data folder.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// The broker.
    pub broker: BrokerChoice,
    /// QUIC listen address.
    pub quic: SocketAddr,
    /// Release public key files to trust from now on.
    pub trust: Vec<PathBuf>,
    /// The host name or address nodes use to reach this control plane.
    pub advertise_host: Option<String>,
    /// How long an assignment stays valid.
    pub assignment_ttl: Duration,
    /// Where bundle files are kept.
    pub artifact_store: ArtifactStoreChoice,
    /// Redirect HTTP downloads to presigned S3 URLs, and list HTTP before QUIC.
    pub presigned_downloads: bool,
    /// Bytes per second per artifact transfer (0: no limit).
    pub transfer_rate_limit: u64,
    /// Artifact transfers sent at once; more wait their turn.
    pub max_concurrent_transfers: usize,
    /// Open QUIC connections allowed; more are refused at once, and their nodes use
    /// the HTTP fallback.
    pub max_quic_connections: usize,
    /// Largest bundle upload.
    pub max_bundle_bytes: usize,
    /// How long telemetry windows are kept.
    pub telemetry_retention: Duration,
    /// Most bytes of the store's pages kept in memory.
    pub store_cache_bytes: u64,
    /// Webhooks that receive alert notifications.
    pub alert_webhooks: Vec<String>,
    /// How long a device must be offline before its alert fires.
    pub offline_alert_after: Duration,
    /// Time between fleet monitor passes.
    pub monitor_interval: Duration,
    /// The `edgewise-train` binary (default: beside this one, else on PATH).
    pub trainer: Option<PathBuf>,
    /// The release key that signs trained bundles (default: the data folder's automation key).
    pub training_signing_key: Option<PathBuf>,
    /// How Kubernetes training jobs are made.
    pub kubernetes: crate::jobs::kubernetes::KubernetesSettings,
    /// How SageMaker training jobs are made.
    pub sagemaker: crate::jobs::sagemaker::SagemakerSettings,
}

/// `edgewise-train` beside the running binary, else the one on PATH.
/// On a fresh data folder, creates the first admin token and writes it where only
/// the control plane's user can read it; every other token comes from that one.
fn bootstrap_admin_token(tokens: &crate::auth::Tokens, path: &std::path::Path) -> Result<()> {
    if !tokens.is_empty()? {
        return Ok(());
    }
    let issued = tokens.create(crate::auth::BOOTSTRAP_TOKEN_NAME, crate::auth::Role::Admin)?;
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    crate::datadir::write_private(path, &issued.token)?;
    tracing::info!(file = %path.display(), "created the first admin API token");
    Ok(())
}

fn default_trainer() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("edgewise-train"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("edgewise-train"))
}

/// The host nodes should use for an address the server bound to.
fn reachable_host(address: SocketAddr) -> String {
    match address.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

/// Runs the control plane until `shutdown` resolves.
pub async fn serve(
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let advertise = options
        .advertise_host
        .clone()
        .unwrap_or_else(|| reachable_host(options.http));
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !names.contains(&advertise) {
        names.push(advertise.trim_matches(['[', ']']).to_owned());
    }
    let data = DataDir::open(&options.data_dir, &options.trust, &names)?;
    if data.release_trust.key_ids().is_empty() {
        tracing::warn!(
            "no release keys are trusted yet, so every push is refused; start with --trust RELEASE.pub"
        );
    }
    let store = Store::open_with_cache(&data.root.join("store"), options.store_cache_bytes)
        .context("cannot open the store")?;
    let tokens = crate::auth::Tokens::open(&store)?;
    bootstrap_admin_token(&tokens, &data.root.join("secrets/admin-token"))?;
    let metrics = crate::telemetry::prometheus().map_err(|e| anyhow!("metrics: {e}"))?;

    let telemetry = TelemetryStore::open(store.clone(), &data.root.join("telemetry"))?;
    let (receipts, pending_receipts) = Receipts::channel();
    let (broker, mqtt_url, republish) = match &options.broker {
        BrokerChoice::Embedded(bind) => {
            let embedded = broker::start(
                *bind,
                store.clone(),
                telemetry.clone(),
                receipts.clone(),
                &data.service_password,
            )
            .await?;
            let port = embedded.address.port();
            let local = BrokerConnection {
                url: BrokerUrl {
                    host: reachable_host(embedded.address),
                    port,
                    tls: false,
                },
                ca_pem: None,
                client_certificate_pem: None,
                client_key_pem: None,
            };
            (
                local,
                format!("mqtt://{advertise}:{port}"),
                mqtt_link::Republish::FirstConnection,
            )
        }
        BrokerChoice::External(external) => (
            external.clone(),
            external.url.to_string(),
            mqtt_link::Republish::EveryConnection,
        ),
    };
    let artifact_store = match &options.artifact_store {
        ArtifactStoreChoice::Local => ArtifactStore::local(data.artifacts()),
        ArtifactStoreChoice::S3 { location, aws } => {
            let remote = S3Artifacts::connect(location.clone(), aws)
                .await
                .map_err(|e| anyhow!("--artifact-store: {e}"))?;
            tracing::info!(store = %remote.describe(), "bundles are kept in S3");
            ArtifactStore::with_remote(data.artifacts(), remote)
        }
    };
    let presign = match (&options.artifact_store, options.presigned_downloads) {
        (_, false) => None,
        (ArtifactStoreChoice::S3 { .. }, true) => Some(options.assignment_ttl.min(MAX_PRESIGN)),
        (ArtifactStoreChoice::Local, true) => {
            bail!("--presigned-downloads needs an S3 --artifact-store")
        }
    };
    let artifacts = ArtifactSource {
        store: artifact_store.clone(),
        rate_limit: options.transfer_rate_limit,
        presign,
        transfer_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
            options.max_concurrent_transfers.max(1),
        )),
        access: crate::artifact_access::ArtifactAccess::new(store.clone()),
    };
    let quic = transfer::start_quic(
        options.quic,
        &data.server,
        &data.ca,
        artifacts.clone(),
        options.max_quic_connections.max(1),
    )?;
    let listener = tokio::net::TcpListener::bind(options.http)
        .await
        .with_context(|| format!("cannot listen on {}", options.http))?;
    let http = listener.local_addr()?;
    let endpoints = Endpoints {
        mqtt_url: mqtt_url.clone(),
        mqtt_ca: broker.ca_pem.clone().filter(|_| broker.url.tls),
        quic: format!("{advertise}:{}", quic.port()),
        quic_server_name: advertise.trim_matches(['[', ']']).to_owned(),
        http: format!("http://{advertise}:{}", http.port()),
        http_first: presign.is_some(),
    };
    let keyring = Keyring::open(
        &store,
        &data.root.join("keys"),
        &data.release_trust,
        data.deployment_key.clone(),
    )?;
    let publisher = mqtt_link::start(
        &broker,
        &data.service_password,
        republish,
        store.clone(),
        telemetry.clone(),
        receipts,
    )
    .map_err(|e| anyhow!("--mqtt: {e}"))?;
    tokio::spawn(crate::receipts::run(
        pending_receipts,
        telemetry.clone(),
        publisher.clone(),
    ));
    let expiring = telemetry.clone();
    let retention = options.telemetry_retention;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            let expiring = expiring.clone();
            match tokio::task::spawn_blocking(move || expiring.expire(retention)).await {
                Ok(Ok(removed)) if removed > 0 => {
                    tracing::info!(removed, "expired telemetry windows")
                }
                Ok(Err(err)) => tracing::error!(error = %err, "cannot expire telemetry"),
                _ => {}
            }
        }
    });
    let registry = Registry::new(store.clone(), artifact_store.clone(), keyring.clone());
    if artifact_store.remote().is_some() {
        let registered: Vec<String> = store
            .versions
            .all()?
            .into_iter()
            .map(|version| version.bundle_sha256)
            .collect();
        tokio::spawn(async move {
            match artifact_store.reconcile(&registered).await {
                Ok(0) => {}
                Ok(uploaded) => {
                    tracing::info!(uploaded, "registered bundles missing from S3 uploaded")
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot compare the registry with the S3 store")
                }
            }
        });
    }
    let fleet = Fleet::new(
        store.clone(),
        endpoints.clone(),
        keyring.clone(),
        data.ca.clone(),
    );
    let deployer = Deployer::new(
        store.clone(),
        registry.clone(),
        keyring.clone(),
        endpoints.clone(),
        options.assignment_ttl,
        publisher,
    );
    let rollouts = Rollouts::new(deployer.clone());
    let jobs = Jobs::new(
        store.clone(),
        registry.clone(),
        Datasets::new(&store, data.root.join("datasets"))?,
        telemetry.clone(),
        JobSettings {
            trainer: options.trainer.clone().unwrap_or_else(default_trainer),
            signing_key: options
                .training_signing_key
                .clone()
                .unwrap_or_else(|| data.automation_key.clone()),
            work_dir: data.root.join("jobs"),
            kubernetes: options.kubernetes.clone(),
            sagemaker: options.sagemaker.clone(),
        },
    )?;
    jobs.start()?;
    let retraining = Retraining::new(&store, jobs.clone(), rollouts.clone())?;
    let policy_hook = retraining.clone();
    tokio::spawn(rollout::run_driver(deployer.clone(), telemetry.clone()));
    let monitor = Monitor::start(
        store.clone(),
        telemetry.clone(),
        MonitorOptions {
            interval: options.monitor_interval,
            settings: AlertSettings {
                offline_after: options.offline_alert_after,
                ..AlertSettings::default()
            },
            webhooks: options.alert_webhooks.clone(),
            external_url: format!("{}/", endpoints.http),
        },
        vec![Box::new(move |snapshot, alerts| {
            policy_hook.on_monitor_pass(snapshot, alerts)
        })],
    );
    let state = AppState::new(Services {
        registry,
        fleet,
        deployer,
        artifacts,
        metrics,
        service_hash: credentials::hash_password(&data.service_password),
        telemetry,
        rollouts,
        monitor,
        jobs,
        retraining,
        tokens,
        keyring,
    });
    println!(
        "edgewise control plane ready: api {} mqtt {} quic {} data {}",
        endpoints.http,
        mqtt_url,
        endpoints.quic,
        data.root.display()
    );
    // One router for every connection: a clone of it shares its routes, where
    // serving the `Router` itself rebuilds every route for each new connection.
    let app = api::router(state, options.max_bundle_bytes).into_make_service();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server stopped")?;
    store.flush()?;
    Ok(())
}
