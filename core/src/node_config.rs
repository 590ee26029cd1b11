//! The node config file (`node.toml`) that `edgewise device add` writes and
//! `edgewise-runtime run --config` reads: who the device is, how it reaches the
//! control plane, and whom it trusts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::broker::{BrokerUrl, ClientTls};
use crate::keys::{KeyError, PublicKey, PublicKeyDocument, TrustStore};
use crate::rotation::{SignedKeyRotation, TrustState};

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
    /// `mqtt://HOST:PORT`, or `mqtts://HOST:PORT` over TLS.
    pub url: String,
    /// Username (the device id).
    pub username: String,
    /// The device's own password; empty where the broker authenticates the device by
    /// its client certificate instead.
    #[serde(default)]
    pub password: String,
    /// PEM of the CA that signs the broker's certificate (`mqtts://` only); without it
    /// the public web roots are trusted, as AWS IoT Core's endpoints need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// PEM of the device's X.509 client certificate, for brokers that authenticate by
    /// certificate (AWS IoT Core, Mosquitto with `require_certificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// PEM of the client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

impl MqttSettings {
    /// The broker address, checked.
    pub fn broker(&self) -> Result<BrokerUrl, String> {
        BrokerUrl::parse(&self.url, "mqtt.url")
    }

    /// The TLS settings of an `mqtts://` URL.
    pub fn tls(&self) -> ClientTls<'_> {
        ClientTls {
            ca_pem: self.ca_certificate.as_deref(),
            certificate_pem: self.client_certificate.as_deref(),
            key_pem: self.client_key.as_deref(),
        }
    }

    /// Whether the device proves itself with a client certificate (and no password).
    pub fn uses_client_certificate(&self) -> bool {
        self.client_certificate.is_some()
    }
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
    /// PEM of this device's client certificate, signed by the control plane's CA and
    /// naming the device; the QUIC artifact server requires it (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// PEM of the client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
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
    /// Key rotations since the keys above: a node applies them at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<SignedKeyRotation>,
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

    /// What the node trusts: the keys above with every rotation applied.
    pub fn trust_state(&self) -> Result<TrustState, String> {
        let release = self.release_trust().map_err(|e| e.to_string())?;
        let deployment = self.deployment_trust().map_err(|e| e.to_string())?;
        let mut state = TrustState::initial(release, deployment);
        state
            .apply_chain(&self.rotations)
            .map_err(|e| format!("trust.rotations: {e}"))?;
        Ok(state)
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
