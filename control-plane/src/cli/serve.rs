//! `edgewise serve`: the control plane's flags, turned into [`ServeOptions`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::server::{self, BrokerChoice, ServeOptions};

/// The flags of `edgewise serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The data folder (created on first start).
    #[arg(long, default_value = "edgewise-data")]
    data_dir: PathBuf,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8700")]
    http: SocketAddr,
    /// `embedded`, or an external broker as mqtt://HOST:PORT.
    #[arg(long, default_value = "embedded")]
    mqtt: String,
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
    /// Bytes per second per artifact transfer; 0 for no limit.
    #[arg(long, default_value_t = 0)]
    transfer_rate_limit: u64,
    /// Largest bundle upload, in bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_bundle_bytes: usize,
    /// How long telemetry windows and captures are kept.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    telemetry_retention: Duration,
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
    /// AWS region of the SageMaker executor (credentials come from AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    aws_region: String,
    /// SageMaker API endpoint (default: the region's).
    #[arg(long)]
    sagemaker_endpoint: Option<String>,
    /// S3 endpoint, path-style (default: the region's).
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
    let broker = match server::parse_broker_url(&args.mqtt).map_err(|e| anyhow!(e))? {
        None => BrokerChoice::Embedded(args.mqtt_listen),
        Some((host, port)) => BrokerChoice::External { host, port },
    };
    server::serve(
        ServeOptions {
            data_dir: args.data_dir,
            http: args.http,
            broker,
            quic: args.quic,
            trust: args.trust,
            advertise_host: args.advertise_host,
            assignment_ttl: args.assignment_ttl,
            transfer_rate_limit: args.transfer_rate_limit,
            max_bundle_bytes: args.max_bundle_bytes,
            telemetry_retention: args.telemetry_retention,
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
