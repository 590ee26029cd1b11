//! Deployments: a signed assignment with a higher seq for every device of a group,
//! published retained on its desired topic; and their progress, read from what the
//! devices report.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use edgewise_core::assignment::{Assignment, AssignmentMode};
use edgewise_core::reported::UpdatePhase;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::fleet::Endpoints;
use crate::keyring::Keyring;
use crate::mqtt_link::Publisher;
use crate::registry::Registry;
use crate::store::{DeploymentRecord, DeviceRecord, GroupTarget, Store, VersionRecord};

/// A request to deploy a version to a group at once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    /// The target group.
    pub group: String,
    /// The model.
    pub model: String,
    /// A version number or an alias.
    pub version: String,
}

/// Where one device is in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceProgress {
    /// Not yet picked up.
    Pending,
    /// Fetching the bundle.
    Downloading,
    /// Checking it.
    Verifying,
    /// Serving the new version.
    Applied,
    /// Refused or failed it; still serving what it had.
    Failed,
    /// A newer assignment replaced this one.
    Superseded,
}

/// One device's line in a deployment's status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceStatus {
    /// Device id.
    pub device: String,
    /// Its assignment's seq in this deployment.
    pub seq: u64,
    /// Its progress.
    pub state: DeviceProgress,
    /// Whether it is online.
    pub online: bool,
    /// What it serves now, as `model:version`.
    pub active: Option<String>,
    /// Why it failed, if it did.
    pub reason: Option<String>,
}

/// A deployment with every device's progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentStatus {
    /// The deployment.
    pub deployment: DeploymentRecord,
    /// Each device's progress.
    pub devices: Vec<DeviceStatus>,
    /// Count per progress state.
    pub summary: BTreeMap<String, usize>,
}

/// Issues and tracks deployments.
#[derive(Clone)]
pub struct Deployer {
    store: Store,
    registry: Registry,
    keyring: Keyring,
    endpoints: Endpoints,
    ttl: Duration,
    publisher: Publisher,
}

impl Deployer {
    /// A deployer signing with the deployment key of `keyring`; assignments live `ttl`.
    pub fn new(
        store: Store,
        registry: Registry,
        keyring: Keyring,
        endpoints: Endpoints,
        ttl: Duration,
        publisher: Publisher,
    ) -> Self {
        Deployer {
            store,
            registry,
            keyring,
            endpoints,
            ttl,
            publisher,
        }
    }

    /// Publishes the current assignment of each device.
    pub(crate) async fn publish(&self, devices: &[DeviceRecord]) {
        for device in devices {
            self.publisher.publish_desired(device).await;
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The registry.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Deploys a version to every device of a group at once.
    pub async fn deploy(&self, request: &NewDeployment) -> Result<DeploymentStatus> {
        let version = self.registry.resolve(&request.model, &request.version)?;
        self.registry.check_signer(&version)?;
        crate::rollout::refuse_if_rolling(&self.store, &request.group, &request.model)?;
        let (deployment, published) = {
            let _guard = self.store.lock();
            let devices: Vec<DeviceRecord> = self
                .store
                .devices
                .all()?
                .into_iter()
                .filter(|device| device.is_active_in(&request.group))
                .collect();
            if devices.is_empty() {
                return Err(Error::NotFound(format!(
                    "group {:?} has no devices; add some with `edgewise device add NAME --group {}`",
                    request.group, request.group
                )));
            }
            let id = format!("dep-{}", self.store.next_id()? + 1);
            let mut deployment = DeploymentRecord {
                id: id.clone(),
                group: request.group.clone(),
                model: version.model.clone(),
                version: version.version,
                bundle_sha256: version.bundle_sha256.clone(),
                created_at: now_rfc3339(),
                assignments: BTreeMap::new(),
            };
            let mut published = Vec::new();
            for mut device in devices {
                self.assign(&mut device, &version, &id)?;
                deployment.assignments.insert(device.id.clone(), device.seq);
                published.push(device);
            }
            self.store.deployments.put(&id, &deployment)?;
            self.store.groups.put(
                &request.group,
                &GroupTarget {
                    model: version.model.clone(),
                    version: version.version,
                    deployment_id: id,
                },
            )?;
            self.store.flush()?;
            (deployment, published)
        };
        for device in &published {
            self.publisher.publish_desired(device).await;
        }
        tracing::info!(deployment = %deployment.id, group = %deployment.group, model = %deployment.model, version = deployment.version, devices = published.len(), "deployed");
        self.status(&deployment.id)
    }

    /// Gives a device its group's current target, if it runs something else (after a
    /// move between groups).
    pub async fn sync_device(&self, device_id: &str) -> Result<()> {
        let device = {
            let _guard = self.store.lock();
            let Some(mut device) = self.store.devices.get(device_id)? else {
                return Err(Error::NotFound(format!(
                    "no device {device_id:?} is registered"
                )));
            };
            let Some(target) = self.store.groups.get(&device.group)? else {
                return Ok(());
            };
            let current = device
                .assignment
                .as_ref()
                .map(|a| (a.model.as_str(), a.version));
            if current == Some((target.model.as_str(), target.version)) {
                return Ok(());
            }
            let version = self
                .registry
                .resolve(&target.model, &target.version.to_string())?;
            self.assign(&mut device, &version, &target.deployment_id)?;
            if let Some(mut deployment) = self.store.deployments.get(&target.deployment_id)? {
                deployment.assignments.insert(device.id.clone(), device.seq);
                self.store.deployments.put(&deployment.id, &deployment)?;
            }
            self.store.flush()?;
            device
        };
        self.publisher.publish_desired(&device).await;
        Ok(())
    }

    /// Signs a new assignment for `device` and stores it (the caller holds the lock).
    fn assign(
        &self,
        device: &mut DeviceRecord,
        version: &VersionRecord,
        deployment_id: &str,
    ) -> Result<()> {
        self.assign_tagged(device, version, deployment_id, None, AssignmentMode::Active)
    }

    /// Signs a new assignment for `device`, naming the rollout stage it belongs to, and
    /// stores it; `origin` is the deployment or rollout id. The caller holds the lock.
    pub(crate) fn assign_tagged(
        &self,
        device: &mut DeviceRecord,
        version: &VersionRecord,
        origin: &str,
        stage: Option<u32>,
        mode: AssignmentMode,
    ) -> Result<()> {
        let (issued_at, expires_at) = Assignment::lifetime(SystemTime::now(), self.ttl);
        // A node refuses any seq at or below the last it saw, whoever sent that one.
        let seen = device.reported.as_ref().map_or(0, |r| r.seq);
        device.seq = device.seq.max(seen) + 1;
        let assignment = Assignment {
            device_id: device.id.clone(),
            seq: device.seq,
            model: version.model.clone(),
            version: version.version,
            bundle_sha256: version.bundle_sha256.clone(),
            size: version.size,
            locations: self.locations(&version.bundle_sha256),
            rollout_id: stage.map(|_| origin.to_owned()),
            stage,
            mode,
            issued_at,
            expires_at,
        };
        device.desired = Some(self.keyring.sign(&assignment));
        device.assignment = Some(assignment);
        device.deployment_id = Some(origin.to_owned());
        self.store.devices.put(&device.id, device)?;
        Ok(())
    }

    /// Where nodes fetch bundle `sha256`: QUIC first, else HTTP first when HTTP
    /// redirects to presigned S3 URLs.
    fn locations(&self, sha256: &str) -> Vec<String> {
        let quic = format!("quic://{}", self.endpoints.quic);
        let http = format!("{}/api/v1/artifacts/{sha256}", self.endpoints.http);
        if self.endpoints.http_first {
            vec![http, quic]
        } else {
            vec![quic, http]
        }
    }

    /// Every deployment, newest first.
    pub fn list(&self) -> Result<Vec<DeploymentRecord>> {
        let mut deployments = self.store.deployments.all()?;
        deployments.sort_by_key(|d| {
            std::cmp::Reverse(d.id.trim_start_matches("dep-").parse::<u64>().unwrap_or(0))
        });
        Ok(deployments)
    }

    /// A deployment with each device's progress.
    pub fn status(&self, id: &str) -> Result<DeploymentStatus> {
        let deployment = self
            .store
            .deployments
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no deployment {id:?}")))?;
        let mut devices = Vec::new();
        let mut summary = BTreeMap::new();
        for (device_id, seq) in &deployment.assignments {
            let Some(device) = self.store.devices.get(device_id)? else {
                continue;
            };
            let line = progress(&device, *seq);
            *summary
                .entry(
                    serde_json::to_value(line.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                )
                .or_insert(0) += 1;
            devices.push(line);
        }
        Ok(DeploymentStatus {
            deployment,
            devices,
            summary,
        })
    }
}

/// Where `device` is with the assignment of `seq`.
fn progress(device: &DeviceRecord, seq: u64) -> DeviceStatus {
    let reported = device.reported.as_ref();
    let active = reported
        .and_then(|r| r.active.as_ref())
        .map(|v| format!("{}:{}", v.model, v.version));
    let state = match reported {
        _ if device.seq > seq => DeviceProgress::Superseded,
        Some(r) if r.applied_seq >= seq => DeviceProgress::Applied,
        Some(r) if r.seq == seq => match r.phase {
            UpdatePhase::Downloading => DeviceProgress::Downloading,
            UpdatePhase::Verifying => DeviceProgress::Verifying,
            UpdatePhase::Failed => DeviceProgress::Failed,
            UpdatePhase::Applied | UpdatePhase::Idle => DeviceProgress::Pending,
        },
        _ => DeviceProgress::Pending,
    };
    DeviceStatus {
        device: device.id.clone(),
        seq,
        state,
        online: device.online,
        active,
        reason: reported.and_then(|r| r.failure.clone()),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
