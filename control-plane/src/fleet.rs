//! The fleet: devices, their groups and labels, their credentials and node configs,
//! and the state they report.

use std::collections::BTreeMap;
use std::time::SystemTime;

use edgewise_core::node_config::{MqttSettings, NodeConfig, TransferSettings};
use edgewise_core::reported::ReportedState;
use edgewise_core::topics::check_device_id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::artifact_access::certificate_fingerprint;
use crate::credentials;
use crate::datadir::SERVICE_USER;
use crate::error::{Error, Result};
use crate::keyring::Keyring;
use crate::pki::{self, CertifiedKey};
use crate::registry::check_name;
use crate::store::{DeviceRecord, Store};

/// Where nodes reach the control plane, as written into node configs.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `mqtt://HOST:PORT` (or `mqtts://`) of the broker.
    pub mqtt_url: String,
    /// PEM of the CA that signs an `mqtts://` broker's certificate, when not a public one.
    pub mqtt_ca: Option<String>,
    /// `HOST:PORT` of the QUIC artifact server.
    pub quic: String,
    /// Name the QUIC certificate is issued for.
    pub quic_server_name: String,
    /// HTTP base URL of the API.
    pub http: String,
    /// Whether assignments list the HTTP location before QUIC (presigned S3 downloads).
    pub http_first: bool,
}

/// A request to register a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// Device id: 1 to 64 of letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Labels, e.g. `{"canary": "true"}`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Its group.
    pub group: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Whether its last status was `online`.
    pub online: bool,
    /// When it was last heard from.
    pub last_seen: Option<String>,
    /// When it was registered.
    pub created_at: String,
    /// The model and version it is assigned.
    pub desired: Option<String>,
    /// The seq of that assignment.
    pub desired_seq: Option<u64>,
    /// Its last report, as sent.
    #[schema(value_type = Option<Object>)]
    pub reported: Option<ReportedState>,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at: Option<String>,
}

/// A registered device with its node config (the only time its password is shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisteredDevice {
    /// The device.
    pub device: DeviceView,
    /// The node config, TOML, to hand to `edgewise-runtime run --config`.
    pub node_config: String,
}

/// A group and its members.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Group name.
    pub name: String,
    /// Member device ids.
    pub devices: Vec<String>,
    /// How many are online.
    pub online: usize,
    /// What the group's latest deployment set, as `model:version`.
    pub target: Option<String>,
}

/// Fleet operations.
#[derive(Clone)]
pub struct Fleet {
    store: Store,
    endpoints: Endpoints,
    keyring: Keyring,
    ca: CertifiedKey,
}

impl Fleet {
    /// The fleet in `store`; node configs name `endpoints`, carry the keys of
    /// `keyring`, and hold a client certificate signed by `ca`.
    pub fn new(store: Store, endpoints: Endpoints, keyring: Keyring, ca: CertifiedKey) -> Self {
        Fleet {
            store,
            endpoints,
            keyring,
            ca,
        }
    }

    /// Registers a device and returns its node config.
    pub fn add(&self, request: NewDevice) -> Result<RegisteredDevice> {
        check_device_id(&request.name)
            .map_err(|e| Error::Invalid(format!("field `name`: device id {e}")))?;
        if request.name == SERVICE_USER {
            return Err(Error::Invalid(format!(
                "field `name`: {SERVICE_USER:?} is reserved"
            )));
        }
        check_name("field `group`: group", &request.group)?;
        for (key, value) in &request.labels {
            check_name("label key", key)?;
            if value.len() > 256 {
                return Err(Error::Invalid(format!(
                    "label {key:?}: value longer than 256 characters"
                )));
            }
        }
        let _guard = self.store.lock();
        if self.store.devices.get(&request.name)?.is_some() {
            return Err(Error::Conflict(format!(
                "device {:?} is already registered",
                request.name
            )));
        }
        let password = credentials::generate_password();
        let identity = pki::issue_client_certificate(&self.ca, &request.name)
            .map_err(|e| Error::Internal(format!("cannot issue the device certificate: {e}")))?;
        let record = DeviceRecord {
            id: request.name.clone(),
            group: request.group,
            labels: request.labels,
            credential_hash: credentials::hash_password(&password),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            seq: 0,
            desired: None,
            assignment: None,
            deployment_id: None,
            reported: None,
            online: false,
            status_epoch: None,
            last_seen: None,
            revoked_at: None,
        };
        self.store.devices.put(&record.id, &record)?;
        self.store.certificates.put(
            &certificate_fingerprint(&identity.certificate_der()?),
            &record.id,
        )?;
        self.store.flush()?;
        let config = NodeConfig {
            device_id: record.id.clone(),
            mqtt: MqttSettings {
                url: self.endpoints.mqtt_url.clone(),
                username: record.id.clone(),
                password,
                ca_certificate: self.endpoints.mqtt_ca.clone(),
                client_certificate: None,
                client_key: None,
            },
            transfer: TransferSettings {
                quic: self.endpoints.quic.clone(),
                server_name: self.endpoints.quic_server_name.clone(),
                http: self.endpoints.http.clone(),
                client_certificate: Some(identity.certificate_pem),
                client_key: Some(identity.key_pem),
            },
            trust: self.keyring.trust_bundle(&self.ca.certificate_pem),
        };
        tracing::info!(device = %record.id, group = %record.group, "device registered");
        Ok(RegisteredDevice {
            device: device_view(&record),
            node_config: config.to_toml(),
        })
    }

    /// Whether `id` is a registered device, not revoked, whose password is `password`.
    pub fn authenticate_device(&self, id: &str, password: &str) -> Result<bool> {
        Ok(self.store.devices.get(id)?.is_some_and(|device| {
            device.revoked_at.is_none()
                && credentials::verify_password(password, &device.credential_hash)
        }))
    }

    /// Revokes a device: from now on its password and its certificate are refused,
    /// and it is sent no more assignments. Its record stays, for the audit trail.
    pub fn revoke(&self, id: &str) -> Result<DeviceView> {
        let _guard = self.store.lock();
        let mut record = self
            .store
            .devices
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no device {id:?}")))?;
        if record.revoked_at.is_none() {
            record.revoked_at =
                Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
            record.online = false;
            self.store.devices.put(id, &record)?;
            self.store.flush()?;
            tracing::warn!(device = %id, "device revoked");
        }
        Ok(device_view(&record))
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<DeviceView>> {
        Ok(self.store.devices.all()?.iter().map(device_view).collect())
    }

    /// One device's record.
    pub fn record(&self, id: &str) -> Result<DeviceRecord> {
        self.store
            .devices
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no device {id:?} is registered")))
    }

    /// One device.
    pub fn device(&self, id: &str) -> Result<DeviceView> {
        Ok(device_view(&self.record(id)?))
    }

    /// Moves a device to `group`.
    pub fn move_to(&self, id: &str, group: &str) -> Result<DeviceRecord> {
        check_name("field `group`: group", group)?;
        let _guard = self.store.lock();
        let mut record = self.record(id)?;
        record.group = group.to_owned();
        self.store.devices.put(id, &record)?;
        self.store.flush()?;
        Ok(record)
    }

    /// Every group with members.
    pub fn groups(&self) -> Result<Vec<GroupView>> {
        let mut groups: BTreeMap<String, GroupView> = BTreeMap::new();
        for device in self.store.devices.all()? {
            let group = groups
                .entry(device.group.clone())
                .or_insert_with(|| GroupView {
                    name: device.group.clone(),
                    devices: Vec::new(),
                    online: 0,
                    target: None,
                });
            group.devices.push(device.id);
            group.online += usize::from(device.online);
        }
        for group in groups.values_mut() {
            group.target = self
                .store
                .groups
                .get(&group.name)?
                .map(|target| format!("{}:{}", target.model, target.version));
        }
        Ok(groups.into_values().collect())
    }

    /// One group.
    pub fn group(&self, name: &str) -> Result<GroupView> {
        self.groups()?
            .into_iter()
            .find(|group| group.name == name)
            .ok_or_else(|| Error::NotFound(format!("group {name:?} has no devices")))
    }

    /// Mosquitto password and ACL files for the whole fleet and the control plane.
    pub fn mosquitto_files(&self, service_hash: &str) -> Result<MosquittoFiles> {
        let mut passwd = format!("{SERVICE_USER}:{service_hash}\n");
        for device in self.store.devices.all()? {
            passwd.push_str(&format!("{}:{}\n", device.id, device.credential_hash));
        }
        Ok(MosquittoFiles {
            passwd,
            acl: mosquitto_acl(),
        })
    }
}

/// The files an external Mosquitto broker needs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MosquittoFiles {
    /// `password_file` contents (`user:$6$…` lines).
    pub passwd: String,
    /// `acl_file` contents.
    pub acl: String,
}

/// The ACL: the control plane may do anything under `edgewise/v1/`; a device may read
/// only its own desired and receipts topics and write only its own reported, telemetry
/// and status.
/// Patterns match on `%u` (the username), never `%c`, which a client picks freely.
fn mosquitto_acl() -> String {
    format!(
        "# Generated by `edgewise broker mosquitto`; regenerate after adding devices.\n\
         user {SERVICE_USER}\n\
         topic readwrite edgewise/v1/#\n\
         \n\
         # Every device, matched on its username.\n\
         pattern read edgewise/v1/devices/%u/desired\n\
         pattern read edgewise/v1/devices/%u/receipts\n\
         pattern write edgewise/v1/devices/%u/reported\n\
         pattern write edgewise/v1/devices/%u/telemetry\n\
         pattern write edgewise/v1/devices/%u/status\n"
    )
}

/// The API view of a record.
pub fn device_view(record: &DeviceRecord) -> DeviceView {
    DeviceView {
        id: record.id.clone(),
        group: record.group.clone(),
        labels: record.labels.clone(),
        online: record.online,
        last_seen: record.last_seen.clone(),
        created_at: record.created_at.clone(),
        desired: record
            .assignment
            .as_ref()
            .map(|a| format!("{}:{}", a.model, a.version)),
        desired_seq: record.assignment.as_ref().map(|a| a.seq),
        reported: record.reported.clone(),
        revoked_at: record.revoked_at.clone(),
    }
}
