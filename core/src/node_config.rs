//! The node config file (`node.toml`) that `edgewise device add` writes and
//! `edgewise-runtime run --config` reads: who the device is, how it reaches the
//! control plane, and whom it trusts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, PublicKey, PublicKeyDocument, TrustStore};

/// Everything a node needs to join its fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The device id; also its MQTT username and client id.
    pub device_id: String,
    /// The MQTT broker and this device's credentials.
    pub mqtt: MqttSettings,
    /// Where bundles are downloaded from.
    pub transfer: TransferSettings,
    /// The keys and CA this node trusts.
    pub trust: TrustBundle,
}

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    /// `mqtt://HOST:PORT`.
    pub url: String,
    /// Username (the device id).
    pub username: String,
    /// The device's own password.
    pub password: String,
}

/// Bundle download settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSettings {
    /// The QUIC artifact server, `HOST:PORT`.
    pub quic: String,
    /// The name the QUIC server's certificate is checked against.
    pub server_name: String,
    /// The control plane's HTTP base URL, for the `Range` fallback.
    pub http: String,
}

/// The node's trust bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBundle {
    /// Keys whose release signatures on bundles are accepted.
    pub release_keys: Vec<PublicKeyDocument>,
    /// Keys whose signatures on assignments are accepted.
    pub deployment_keys: Vec<PublicKeyDocument>,
    /// PEM of the CA that signs the QUIC server certificate.
    pub ca_certificate: String,
}

impl TrustBundle {
    /// The release keys as a trust store; errors name the entry.
    pub fn release_trust(&self) -> Result<TrustStore, KeyError> {
        trust_store(&self.release_keys, "trust.release_keys")
    }

    /// The deployment keys as a trust store; errors name the entry.
    pub fn deployment_trust(&self) -> Result<TrustStore, KeyError> {
        trust_store(&self.deployment_keys, "trust.deployment_keys")
    }
}

/// Builds a trust store from key documents, naming `field[i]` in errors.
fn trust_store(documents: &[PublicKeyDocument], field: &str) -> Result<TrustStore, KeyError> {
    let mut store = TrustStore::new();
    for (index, document) in documents.iter().enumerate() {
        let source = format!("{field}[{index}]");
        store.add(PublicKey::from_document(document, Path::new(&source))?);
    }
    Ok(store)
}

impl NodeConfig {
    /// Parses TOML text; the error names the line and field.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}
