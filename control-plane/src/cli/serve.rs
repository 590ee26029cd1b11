//! `edgewise serve`: the control plane's flags, turned into [`ServeOptions`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;

use crate::aws::AwsTarget;
use crate::aws::s3::S3Location;
use crate::server::{self, ArtifactStoreChoice, BrokerChoice, BrokerConnection, ServeOptions};
use edgewise_core::broker::BrokerUrl;

/// The flags of `edgewise serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The data folder (created on first start).
    #[arg(long, default_value = "edgewise-data")]
    data_dir: PathBuf,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8700")]
    http: SocketAddr,
    /// `embedded`, or an external broker as mqtt://HOST:PORT or mqtts://HOST:PORT (TLS;
    /// for AWS IoT Core, mqtts://ENDPOINT:8883 from `edgewise fleet sync --aws`).
    #[arg(long, default_value = "embedded")]
    mqtt: String,
    /// PEM file of the CA that signs an mqtts:// broker's certificate (default: the public
    /// web roots); nodes registered from now on trust it too.
    #[arg(long)]
    mqtt_ca: Option<PathBuf>,
    /// PEM file of the control plane's client certificate for brokers that authenticate
    /// by certificate, such as AWS IoT Core (thing `edgewise-control-plane`).
    #[arg(long, requires = "mqtt_client_key")]
    mqtt_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, requires = "mqtt_client_cert")]
    mqtt_client_key: Option<PathBuf>,
    /// Where the embedded broker listens.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt_listen: SocketAddr,
    /// QUIC artifact server listen address (UDP).
    #[arg(long, default_value = "127.0.0.1:8701")]
    quic: SocketAddr,
    /// Release public key files whose bundles are accepted (kept in the data folder).
    #[arg(long)]
    trust: Vec<PathBuf>,
    /// Host name or address that nodes use to reach this machine.
    #[arg(long)]
    advertise_host: Option<String>,
    /// How long an assignment stays valid.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    assignment_ttl: Duration,
    /// Where bundle files are kept: `local` (the data folder) or s3://BUCKET[/PREFIX]
    /// (the data folder then caches them). Uses --aws-region and --s3-endpoint.
    #[arg(long, default_value = "local")]
    artifact_store: String,
    /// With an S3 store: nodes fetch bundles straight from S3 through presigned URLs (the
    /// HTTP download answers 307 to one), with the control plane's QUIC as fallback.
    #[arg(long)]
    presigned_downloads: bool,
    /// Bytes per second per artifact transfer; 0 for no limit.
    #[arg(long, default_value_t = 0)]
    transfer_rate_limit: u64,
    /// Artifact transfers (QUIC and HTTP) sent at once; more wait their turn.
    #[arg(long, default_value_t = 64)]
    max_concurrent_transfers: usize,
    /// Open QUIC artifact connections allowed (transferring or queued); more are
    /// refused at once, and those nodes download over the HTTP fallback instead.
    #[arg(long, default_value_t = 256)]
    max_quic_connections: usize,
    /// Largest bundle upload, in bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_bundle_bytes: usize,
    /// How long telemetry windows and captures are kept.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    telemetry_retention: Duration,
    /// MiB of the store's pages kept in memory; the rest is read from disk when needed.
    #[arg(long, default_value_t = crate::store::DEFAULT_CACHE_BYTES / (1024 * 1024))]
    store_cache_mib: u64,
    /// Webhook URL that receives alert notifications in Alertmanager's JSON shape
    /// (repeat for several receivers).
    #[arg(long = "alert-webhook")]
    alert_webhooks: Vec<String>,
    /// How long a device must be offline before the node-offline alert fires.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    offline_alert_after: Duration,
    /// Time between fleet monitor passes (fleet gauges and alerts); at most 30s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    monitor_interval: Duration,
    /// The `edgewise-train` binary training jobs run (default: beside `edgewise`, else
    /// on PATH).
    #[arg(long)]
    trainer: Option<PathBuf>,
    /// Release secret key that signs trained bundles (default: the data folder's
    /// automation key, trusted from the first start). Trust its .pub with --trust.
    #[arg(long)]
    training_signing_key: Option<PathBuf>,
    /// kubectl for the Kubernetes training executor (without it, Jobs are only rendered).
    #[arg(long)]
    kubectl: Option<PathBuf>,
    /// Image of Kubernetes training Jobs (holds edgewise-train and curl).
    #[arg(long, default_value = "ghcr.io/edgewise/edgewise-train:latest")]
    k8s_image: String,
    /// Namespace of Kubernetes training Jobs.
    #[arg(long, default_value = "edgewise")]
    k8s_namespace: String,
    /// The control plane's URL as training pods reach it.
    #[arg(
        long,
        default_value = "http://edgewise-control-plane.edgewise.svc:8700"
    )]
    k8s_server_url: String,
    /// AWS region of the S3 artifact store and the SageMaker executor (credentials from
    /// the standard AWS chain; the SageMaker executor reads AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    aws_region: String,
    /// SageMaker API endpoint (default: the region's).
    #[arg(long)]
    sagemaker_endpoint: Option<String>,
    /// S3 endpoint URL, path-style, for the artifact store and SageMaker (default: the region's).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 bucket for SageMaker job inputs and outputs.
    #[arg(long)]
    sagemaker_bucket: Option<String>,
    /// IAM role SageMaker assumes for training jobs.
    #[arg(long)]
    sagemaker_role_arn: Option<String>,
    /// SageMaker training image (edgewise-train with its SageMaker entry point).
    #[arg(long, default_value = "edgewise-train:latest")]
    sagemaker_image: String,
    /// SageMaker training instance type.
    #[arg(long, default_value = "ml.m5.large")]
    sagemaker_instance_type: String,
    /// Time between DescribeTrainingJob calls.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sagemaker_poll: Duration,
}

/// Runs `edgewise serve` until `shutdown` resolves.
pub async fn serve(
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let broker = if args.mqtt == "embedded" {
        BrokerChoice::Embedded(args.mqtt_listen)
    } else {
        BrokerChoice::External(BrokerConnection {
            url: BrokerUrl::parse(&args.mqtt, "--mqtt").map_err(|e| anyhow!(e))?,
            ca_pem: read_pem(args.mqtt_ca.as_deref(), "--mqtt-ca")?,
            client_certificate_pem: read_pem(
                args.mqtt_client_cert.as_deref(),
                "--mqtt-client-cert",
            )?,
            client_key_pem: read_pem(args.mqtt_client_key.as_deref(), "--mqtt-client-key")?,
        })
    };
    let artifact_store = if args.artifact_store == "local" {
        ArtifactStoreChoice::Local
    } else {
        ArtifactStoreChoice::S3 {
            location: S3Location::parse(&args.artifact_store, "--artifact-store")
                .map_err(|e| anyhow!("{e}, or `local`"))?,
            aws: AwsTarget {
                region: args.aws_region.clone(),
                endpoint: args.s3_endpoint.clone(),
            },
        }
    };
    server::serve(
        ServeOptions {
            artifact_store,
            presigned_downloads: args.presigned_downloads,
            data_dir: args.data_dir,
            http: args.http,
            broker,
            quic: args.quic,
            trust: args.trust,
            advertise_host: args.advertise_host,
            assignment_ttl: args.assignment_ttl,
            transfer_rate_limit: args.transfer_rate_limit,
            max_concurrent_transfers: args.max_concurrent_transfers,
            max_quic_connections: args.max_quic_connections,
            max_bundle_bytes: args.max_bundle_bytes,
            telemetry_retention: args.telemetry_retention,
            store_cache_bytes: args.store_cache_mib.saturating_mul(1024 * 1024),
            alert_webhooks: args.alert_webhooks,
            offline_alert_after: args.offline_alert_after,
            monitor_interval: args.monitor_interval,
            trainer: args.trainer,
            training_signing_key: args.training_signing_key,
            kubernetes: crate::jobs::kubernetes::KubernetesSettings {
                image: args.k8s_image,
                namespace: args.k8s_namespace,
                server_url: args.k8s_server_url,
                kubectl: args.kubectl,
                ..Default::default()
            },
            sagemaker: crate::jobs::sagemaker::SagemakerSettings {
                region: args.aws_region,
                endpoint: args.sagemaker_endpoint,
                s3_endpoint: args.s3_endpoint,
                bucket: args.sagemaker_bucket,
                role_arn: args.sagemaker_role_arn,
                image: args.sagemaker_image,
                instance_type: args.sagemaker_instance_type,
                poll: args.sagemaker_poll,
            },
        },
        shutdown,
    )
    .await
}

/// Reads an optional PEM file named by `flag`.
fn read_pem(path: Option<&std::path::Path>, flag: &str) -> Result<Option<String>> {
    path.map(|path| {
        std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))
    })
    .transpose()
}
