//! The `edgewise` command line: `serve` runs the control plane; every other command is
//! a client of its REST API.

mod access;
mod client;
mod fleet;
mod keys;
mod overview;
mod render;
mod rollout;
mod serve;
mod train;
mod transfer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use edgewise_core::bundle::Bundle;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::json;

use crate::deploy::{DeploymentStatus, DeviceProgress};
use crate::fleet::{DeviceView, GroupView, MosquittoFiles, RegisteredDevice};
use crate::registry::{ModelSummary, VersionView};
use client::ApiClient;
use render::{or_dash, table};

/// Edgewise control plane: model registry, fleet and deployments.
#[derive(Parser)]
#[command(name = "edgewise", version, about)]
pub struct Cli {
    /// The control plane's URL.
    #[arg(
        long,
        global = true,
        env = "EDGEWISE_SERVER",
        default_value = "http://127.0.0.1:8700"
    )]
    server: String,
    /// The API token (default: the file of --token-file, else
    /// ./edgewise-data/secrets/admin-token when it exists).
    #[arg(long, global = true, env = "EDGEWISE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the API token.
    #[arg(long, global = true, env = "EDGEWISE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: REST API, embedded MQTT broker, QUIC artifact server.
    Serve(Box<serve::ServeArgs>),
    /// The model registry.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Device groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Deploy a version to a whole group at once.
    Deploy {
        /// The group.
        #[arg(long)]
        group: String,
        /// The model.
        #[arg(long)]
        model: String,
        /// A version number or alias.
        #[arg(long)]
        version: String,
        /// Wait until every device has applied it (or failed).
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The fleet on one screen: groups, rollouts, served versions and alerts. With a
    /// deployment id (or `latest`), that deployment's progress per device.
    Status {
        /// Deployment id, or `latest`.
        deployment: Option<String>,
    },
    /// Staged rollouts gated on how the new version behaves on the devices.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Files for running an external MQTT broker.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Training data for training jobs.
    #[command(subcommand)]
    Dataset(train::DatasetCommand),
    /// Training jobs: submit, follow, cancel, approve.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Retraining policies: drift or low accuracy → retrain → canary.
    #[command(subcommand)]
    Retraining(train::RetrainingCommand),
    /// The fleet in other systems: `fleet sync --aws` mirrors it into AWS IoT Core.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// API tokens: create, list, revoke (admin).
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Signing keys: show them, rotate the deployment key, publish release rotations.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The audit log: every mutating API call with the token that made it (admin).
    Audit {
        /// How many of the newest lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Register a signed bundle.
    Push {
        /// The bundle file.
        bundle: PathBuf,
    },
    /// Download a version's signed bundle (checked against the registry's sha256).
    Download {
        /// Model name.
        name: String,
        /// Version number or alias.
        version: String,
        /// Where to write it (default: NAME-vVERSION.bundle in the current folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Register a version from the MLflow Model Registry, by alias.
    Import {
        /// NAME@ALIAS in MLflow's registry.
        #[arg(long)]
        from_mlflow: String,
        /// The MLflow tracking server.
        #[arg(long, env = "MLFLOW_TRACKING_URI")]
        tracking_uri: String,
    },
    /// List models.
    List,
    /// Show a model's versions, or one version.
    Show {
        /// Model name.
        name: String,
        /// Version number or alias.
        version: Option<String>,
    },
    /// Delete a version (refused while assigned).
    Delete {
        /// Model name.
        name: String,
        /// Version number.
        version: String,
    },
    /// Set, move, delete or list aliases.
    #[command(subcommand)]
    Alias(AliasCommand),
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Point an alias at a version.
    Set {
        /// Model name.
        name: String,
        /// Alias, e.g. `champion`.
        alias: String,
        /// Version number.
        version: u64,
    },
    /// Delete an alias.
    Delete {
        /// Model name.
        name: String,
        /// Alias.
        alias: String,
    },
    /// List a model's aliases.
    List {
        /// Model name.
        name: String,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device and write its node config.
    Add {
        /// Device id.
        name: String,
        /// Its group.
        #[arg(long)]
        group: String,
        /// A label, `key=value`; repeat for several.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Where to write the node config (default `NAME.toml`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List devices.
    List,
    /// Show one device.
    Show {
        /// Device id.
        id: String,
    },
    /// Move a device to another group.
    Move {
        /// Device id.
        id: String,
        /// The new group.
        #[arg(long)]
        group: String,
    },
    /// Revoke a device: its password and certificate stop working at once.
    Revoke {
        /// Device id.
        id: String,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List groups.
    List,
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Write Mosquitto's password and ACL files for the fleet into a folder.
    Mosquitto {
        /// The folder.
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("label {text:?} must be key=value"))
}

/// Runs the command line.
pub async fn run(
    cli: Cli,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let token = match cli.command {
        Command::Serve(_) => None,
        _ => access::resolve_token(cli.token, cli.token_file)?,
    };
    let api = ApiClient::new(&cli.server, token.as_deref())?;
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => serve::serve(*args, shutdown).await,
        Command::Model(command) => model(&api, json, command).await,
        Command::Device(command) => device(&api, json, command).await,
        Command::Group(GroupCommand::List) => {
            let groups: Vec<GroupView> = api.get("/api/v1/groups").await?;
            if json {
                render::json(&groups);
            } else {
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.name.clone(),
                            g.devices.len().to_string(),
                            g.online.to_string(),
                            or_dash(g.target.as_ref()),
                            g.devices.join(","),
                        ]
                    })
                    .collect();
                table(&["group", "devices", "online", "target", "members"], &rows);
            }
            Ok(())
        }
        Command::Deploy {
            group,
            model,
            version,
            wait,
            timeout,
        } => {
            let body = json!({ "group": group, "model": model, "version": version });
            let status: DeploymentStatus = api
                .send_json(Method::POST, "/api/v1/deployments", &body)
                .await?;
            if wait {
                let status = wait_for(&api, &status.deployment.id, timeout).await?;
                print_status(json, &status);
                if status
                    .devices
                    .iter()
                    .any(|d| d.state == DeviceProgress::Failed)
                {
                    bail!("deployment {} failed on some devices", status.deployment.id);
                }
            } else {
                print_status(json, &status);
            }
            Ok(())
        }
        Command::Status { deployment: None } => overview::show(&api, json).await,
        Command::Status {
            deployment: Some(id),
        } => {
            let id = match id.as_str() {
                "latest" => api.newest_id("/api/v1/deployments", "deployments").await?,
                _ => id,
            };
            let status: DeploymentStatus = api.get(&format!("/api/v1/deployments/{id}")).await?;
            print_status(json, &status);
            Ok(())
        }
        Command::Rollout(command) => rollout::run(&api, json, command).await,
        Command::Dataset(command) => train::dataset(&api, json, command).await,
        Command::Train(command) => train::run(&api, json, command).await,
        Command::Retraining(command) => train::retraining(&api, command).await,
        Command::Fleet(command) => fleet::run(&api, json, command).await,
        Command::Token(command) => access::token(&api, json, command).await,
        Command::Audit { limit } => access::audit(&api, json, limit).await,
        Command::Keys(command) => keys::run(&api, json, command).await,
        Command::Broker(BrokerCommand::Mosquitto { out }) => {
            let files: MosquittoFiles = api.get("/api/v1/broker/mosquitto").await?;
            std::fs::create_dir_all(&out)?;
            write_world_readable(&out.join("passwd"), &files.passwd)?;
            write_world_readable(&out.join("acl"), &files.acl)?;
            println!(
                "wrote {} and {}",
                out.join("passwd").display(),
                out.join("acl").display()
            );
            Ok(())
        }
    }
}

/// Mosquitto drops to the `mosquitto` user, so its files must be readable by it; they
/// hold only salted hashes.
fn write_world_readable(path: &std::path::Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(())
}

async fn model(api: &ApiClient, json: bool, command: ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Push { bundle } => {
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let name = Bundle::open(&bytes)
                .with_context(|| format!("{} is not a bundle", bundle.display()))?
                .manifest
                .name;
            let view = transfer::upload(api, &name, bytes).await?;
            if json {
                render::json(&view);
            } else {
                println!(
                    "registered {} version {} (bundle {})",
                    view.model, view.version, view.bundle_sha256
                );
            }
        }
        ModelCommand::Download { name, version, out } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}-v{version}.bundle")));
            let view = transfer::download(api, &name, &version, &out).await?;
            if json {
                render::json(&view);
            } else {
                println!(
                    "wrote {} version {} to {} ({} bytes, sha256 {})",
                    view.model,
                    view.version,
                    out.display(),
                    view.size,
                    view.bundle_sha256
                );
            }
        }
        ModelCommand::Import {
            from_mlflow,
            tracking_uri,
        } => {
            let (view, fetched) =
                transfer::import_from_mlflow(api, &from_mlflow, &tracking_uri).await?;
            if json {
                render::json(&view);
            } else {
                println!(
                    "imported {} version {} (bundle {}) from MLflow version {} of run {}",
                    view.model, view.version, view.bundle_sha256, fetched.version, fetched.run_id
                );
            }
        }
        ModelCommand::List => {
            let models: Vec<ModelSummary> = api.get("/api/v1/models").await?;
            if json {
                render::json(&models);
            } else {
                let rows: Vec<Vec<String>> = models
                    .iter()
                    .map(|m| {
                        let versions: Vec<String> = m.versions.iter().map(u64::to_string).collect();
                        let aliases: Vec<String> =
                            m.aliases.iter().map(|(a, v)| format!("{a}={v}")).collect();
                        vec![m.name.clone(), versions.join(","), aliases.join(",")]
                    })
                    .collect();
                table(&["model", "versions", "aliases"], &rows);
            }
        }
        ModelCommand::Show { name, version } => {
            let versions: Vec<VersionView> = match version {
                Some(version) => vec![
                    api.get(&format!("/api/v1/models/{name}/versions/{version}"))
                        .await?,
                ],
                None => api.get(&format!("/api/v1/models/{name}/versions")).await?,
            };
            if json {
                render::json(&versions);
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.version.to_string(),
                            render::metric(&v.metrics, "test_accuracy"),
                            render::metric(&v.metrics, "macro_f1"),
                            v.lineage
                                .get("dataset")
                                .and_then(|d| d.as_str())
                                .unwrap_or("-")
                                .to_owned(),
                            v.profile.len().to_string(),
                            v.aliases.join(","),
                            v.bundle_sha256[..12].to_owned(),
                            v.signer_key_id.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "version", "accuracy", "macro_f1", "dataset", "features", "aliases",
                        "sha256", "signer",
                    ],
                    &rows,
                );
            }
        }
        ModelCommand::Delete { name, version } => {
            api.delete(&format!("/api/v1/models/{name}/versions/{version}"))
                .await?;
            println!("deleted {name} version {version}");
        }
        ModelCommand::Alias(AliasCommand::Set {
            name,
            alias,
            version,
        }) => {
            let aliases: BTreeMap<String, u64> = api
                .send_json(
                    Method::PUT,
                    &format!("/api/v1/models/{name}/aliases/{alias}"),
                    &json!({ "version": version }),
                )
                .await?;
            render::aliases(json, &aliases);
        }
        ModelCommand::Alias(AliasCommand::Delete { name, alias }) => {
            api.delete(&format!("/api/v1/models/{name}/aliases/{alias}"))
                .await?;
            println!("deleted alias {alias} of {name}");
        }
        ModelCommand::Alias(AliasCommand::List { name }) => {
            let aliases: BTreeMap<String, u64> =
                api.get(&format!("/api/v1/models/{name}/aliases")).await?;
            render::aliases(json, &aliases);
        }
    }
    Ok(())
}

async fn device(api: &ApiClient, json: bool, command: DeviceCommand) -> Result<()> {
    match command {
        DeviceCommand::Add {
            name,
            group,
            labels,
            out,
        } => {
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            let body = json!({ "name": name, "group": group, "labels": labels });
            let registered: RegisteredDevice = api
                .send_json(Method::POST, "/api/v1/devices", &body)
                .await?;
            let path = out.unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
            fleet::write_private(&path, &registered.node_config)?;
            if json {
                render::json(&registered.device);
            } else {
                println!(
                    "registered device {name} in group {group}; node config written to {} (it holds the device's password)",
                    path.display()
                );
            }
        }
        DeviceCommand::List => {
            let devices: Vec<DeviceView> = api.get("/api/v1/devices").await?;
            if json {
                render::json(&devices);
            } else {
                print_devices(&devices);
            }
        }
        DeviceCommand::Show { id } => {
            let device: DeviceView = api.get(&format!("/api/v1/devices/{id}")).await?;
            if json {
                render::json(&device);
            } else {
                print_devices(std::slice::from_ref(&device));
                if let Some(reason) = device.reported.as_ref().and_then(|r| r.failure.as_ref()) {
                    println!("last failure: {reason}");
                }
            }
        }
        DeviceCommand::Move { id, group } => {
            let device: DeviceView = api
                .send_json(
                    Method::PUT,
                    &format!("/api/v1/devices/{id}/group"),
                    &json!({ "group": group }),
                )
                .await?;
            if json {
                render::json(&device);
            } else {
                println!("moved {id} to group {}", device.group);
            }
        }
        DeviceCommand::Revoke { id } => {
            let device: DeviceView = api
                .send_json(
                    Method::POST,
                    &format!("/api/v1/devices/{id}/revoke"),
                    &json!({}),
                )
                .await?;
            if json {
                render::json(&device);
            } else {
                println!(
                    "revoked device {id}; its credentials and certificate are refused from now on"
                );
            }
        }
    }
    Ok(())
}

fn print_devices(devices: &[DeviceView]) {
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            let reported = d.reported.as_ref();
            vec![
                d.id.clone(),
                d.group.clone(),
                if d.online { "online" } else { "offline" }.to_owned(),
                or_dash(d.desired.as_ref()),
                or_dash(
                    reported
                        .and_then(|r| r.active.as_ref())
                        .map(|v| format!("{}:{}", v.model, v.version)),
                ),
                or_dash(reported.map(|r| format!("{:?}", r.phase).to_lowercase())),
                or_dash(
                    reported
                        .map(|r| r.adapter.clone())
                        .filter(|a| !a.is_empty()),
                ),
                or_dash(d.last_seen.as_ref()),
            ]
        })
        .collect();
    table(
        &[
            "device",
            "group",
            "status",
            "desired",
            "active",
            "phase",
            "backend",
            "last seen",
        ],
        &rows,
    );
}

fn print_status(json: bool, status: &DeploymentStatus) {
    if json {
        render::json(status);
        return;
    }
    let d = &status.deployment;
    println!(
        "deployment {}: {} version {} to group {} ({})",
        d.id, d.model, d.version, d.group, d.created_at
    );
    let rows: Vec<Vec<String>> = status
        .devices
        .iter()
        .map(|s| {
            vec![
                s.device.clone(),
                s.seq.to_string(),
                format!("{:?}", s.state).to_lowercase(),
                if s.online { "online" } else { "offline" }.to_owned(),
                or_dash(s.active.as_ref()),
                or_dash(s.reason.as_ref()),
            ]
        })
        .collect();
    table(
        &["device", "seq", "state", "status", "active", "reason"],
        &rows,
    );
}

/// Polls a deployment until every device applied or failed, with a progress bar.
async fn wait_for(api: &ApiClient, id: &str, timeout: Duration) -> Result<DeploymentStatus> {
    let started = Instant::now();
    let mut status: DeploymentStatus = api.get(&format!("/api/v1/deployments/{id}")).await?;
    let bar = ProgressBar::new(status.devices.len() as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} devices")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("deploying {}", id));
    loop {
        let done = status
            .devices
            .iter()
            .filter(|d| {
                matches!(
                    d.state,
                    DeviceProgress::Applied | DeviceProgress::Failed | DeviceProgress::Superseded
                )
            })
            .count();
        bar.set_position(done as u64);
        if done == status.devices.len() {
            bar.finish_and_clear();
            return Ok(status);
        }
        if started.elapsed() > timeout {
            bar.abandon();
            bail!(
                "deployment {id} did not finish within {}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        status = api.get(&format!("/api/v1/deployments/{id}")).await?;
    }
}
