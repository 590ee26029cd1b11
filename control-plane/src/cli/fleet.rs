//! `edgewise fleet sync --aws`: mirrors the fleet's groups and devices into AWS IoT Core
//! (thing groups, things, certificates, the per-thing policy), keeps each new
//! certificate and key in a folder, and switches the node configs found there to the
//! IoT Core endpoint with certificate authentication.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use edgewise_core::node_config::NodeConfig;
use indicatif::ProgressBar;

use super::client::ApiClient;
use super::render;
use crate::aws::AwsTarget;
use crate::aws::iot::{DesiredFleet, FleetMirror, IssuedCertificate, SyncReport};
use crate::aws::iot_policy::CONTROL_PLANE_THING;
use crate::fleet::DeviceView;

/// `edgewise fleet …`.
#[derive(Subcommand)]
pub enum FleetCommand {
    /// Mirror groups and devices into AWS IoT Core: a thing group per group, a thing and
    /// an X.509 certificate per device, and a policy that limits each thing to its own
    /// topics. Safe to run again; it changes only what differs.
    Sync {
        /// Mirror into AWS IoT Core (credentials from the standard AWS chain).
        #[arg(long, required = true)]
        aws: bool,
        /// The AWS region.
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        aws_region: String,
        /// An AWS IoT API endpoint URL that replaces the region's.
        #[arg(long)]
        aws_endpoint: Option<String>,
        /// Folder for new certificates and keys (ID.cert.pem, ID.key.pem). Node configs
        /// kept there as ID.toml are switched to the IoT Core endpoint and certificate.
        #[arg(long, default_value = "edgewise-iot")]
        out: PathBuf,
    },
}

/// Runs a fleet command.
pub async fn run(api: &ApiClient, json: bool, command: FleetCommand) -> Result<()> {
    let FleetCommand::Sync {
        aws: _,
        aws_region,
        aws_endpoint,
        out,
    } = command;
    let devices: Vec<DeviceView> = api.get("/api/v1/devices").await?;
    let mut fleet = DesiredFleet::default();
    for device in &devices {
        if !fleet.groups.contains(&device.group) {
            fleet.groups.push(device.group.clone());
        }
        fleet
            .devices
            .push((device.id.clone(), device.group.clone()));
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mirror = FleetMirror::connect(&AwsTarget {
        region: aws_region,
        endpoint: aws_endpoint,
    })
    .await;
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!(
        "mirroring {} groups and {} devices into AWS IoT Core",
        fleet.groups.len(),
        fleet.devices.len()
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut issued = Vec::new();
    let result = mirror
        .sync(&fleet, &mut |certificate: &IssuedCertificate| {
            keep_certificate(&out, certificate).map_err(|e| format!("{e:#}"))?;
            issued.push(certificate.clone());
            Ok(())
        })
        .await;
    spinner.finish_and_clear();
    let report = result.map_err(|e| anyhow::anyhow!("AWS IoT sync: {e}"))?;
    let mut switched = Vec::new();
    for certificate in &issued {
        let config = out.join(format!("{}.toml", certificate.thing));
        if config.is_file() {
            switch_node_config(&config, &report.endpoint, certificate)?;
            switched.push(config.display().to_string());
        }
    }
    if json {
        render::json(&serde_json::json!({"report": report, "node_configs_switched": switched}));
    } else {
        print_report(&report, &switched, &out);
    }
    if !report.failed.is_empty() {
        bail!("{} thing(s) could not be mirrored", report.failed.len());
    }
    Ok(())
}

/// Writes a new certificate (readable) and its key (owner only) into `out`.
fn keep_certificate(out: &Path, certificate: &IssuedCertificate) -> Result<()> {
    let certificate_path = out.join(format!("{}.cert.pem", certificate.thing));
    std::fs::write(&certificate_path, &certificate.certificate_pem)
        .with_context(|| format!("cannot write {}", certificate_path.display()))?;
    write_private(
        &out.join(format!("{}.key.pem", certificate.thing)),
        &certificate.private_key_pem,
    )
}

/// Points a node config at the IoT Core endpoint with the device's certificate.
fn switch_node_config(path: &Path, endpoint: &str, certificate: &IssuedCertificate) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config = NodeConfig::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a node config: {e}", path.display()))?;
    config.mqtt.url = format!("mqtts://{endpoint}:8883");
    config.mqtt.password = String::new();
    config.mqtt.ca_certificate = None;
    config.mqtt.client_certificate = Some(certificate.certificate_pem.clone());
    config.mqtt.client_key = Some(certificate.private_key_pem.clone());
    write_private(path, &config.to_toml())
}

/// Writes `contents` to `path`, readable by its owner only.
pub(super) fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_report(report: &SyncReport, switched: &[String], out: &Path) {
    let rows = [
        ("policies created or updated", &report.policies_changed),
        ("thing groups created", &report.groups_created),
        ("things created", &report.things_created),
        ("group memberships changed", &report.memberships_changed),
        ("certificates issued", &report.certificates_issued),
        ("already in order", &report.unchanged),
        ("failed", &report.failed),
    ];
    for (what, items) in rows {
        let listed = if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        };
        println!("{what:<28} {:>4}  {listed}", items.len());
    }
    for config in switched {
        println!("node config {config} now connects to IoT Core with its certificate");
    }
    println!("IoT Core MQTT endpoint: mqtts://{}:8883", report.endpoint);
    println!(
        "run the control plane on it with: edgewise serve --mqtt mqtts://{}:8883 --mqtt-client-cert {} --mqtt-client-key {}",
        report.endpoint,
        out.join(format!("{CONTROL_PLANE_THING}.cert.pem"))
            .display(),
        out.join(format!("{CONTROL_PLANE_THING}.key.pem")).display()
    );
}
