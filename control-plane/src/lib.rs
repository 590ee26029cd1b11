//! `edgewise-control-plane`: the cloud side of Edgewise. `edgewise serve` keeps the
//! model registry (signed bundles, aliases), the fleet (devices, groups, credentials,
//! node configs) and deployments (signed per-device assignments published retained
//! over MQTT), runs the embedded MQTT broker and the QUIC artifact server, and serves
//! the REST API. The rest of the `edgewise` CLI is a client of that API.
//!
//! It never links burn: it reads bundles through `edgewise-core` only.

pub mod api;
pub mod artifact_access;
pub mod artifacts;
pub mod auth;
pub mod aws;
pub mod broker;
pub mod cli;
pub mod credentials;
pub mod dashboard;
pub mod datadir;
pub mod deploy;
pub mod error;
pub mod fleet;
pub mod jobs;
pub mod keyring;
pub mod monitor;
pub mod mqtt_link;
pub mod pki;
pub mod receipts;
pub mod registry;
pub mod retraining;
pub mod rollout;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod telemetry_fold;
mod telemetry_migration;
pub mod telemetry_store;
pub mod telemetry_views;
pub mod transfer;
pub mod window_log;
