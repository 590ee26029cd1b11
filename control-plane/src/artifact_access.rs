//! Who may download which bundle: a device, known by its client certificate (QUIC) or
//! its credentials (HTTP), gets only the bundle of its current assignment, and a
//! revoked device gets nothing.

use sha2::{Digest, Sha256};

use crate::store::{DeviceRecord, Store};

/// The device checks the artifact servers make.
#[derive(Clone)]
pub struct ArtifactAccess {
    store: Store,
}

/// sha256 of a certificate's DER bytes, hex: how a device's certificate is pinned.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl ArtifactAccess {
    /// Checks against the devices in `store`.
    pub fn new(store: Store) -> Self {
        ArtifactAccess { store }
    }

    /// The device whose issued certificate has DER bytes `der`, unless it is revoked.
    pub fn device_by_certificate(&self, der: &[u8]) -> Result<DeviceRecord, String> {
        let fingerprint = certificate_fingerprint(der);
        let id = self
            .store
            .certificates
            .get(&fingerprint)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("client certificate {fingerprint} was not issued to any device")
            })?;
        self.active_device(&id)
    }

    /// The device `id`, unless it is missing or revoked.
    pub fn active_device(&self, id: &str) -> Result<DeviceRecord, String> {
        let device = self
            .store
            .devices
            .get(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("device {id:?} is not registered"))?;
        match &device.revoked_at {
            Some(at) => Err(format!("device {id:?} was revoked at {at}")),
            None => Ok(device),
        }
    }

    /// Errors unless device `id` is active and its current assignment names `sha256`.
    pub fn may_download(&self, id: &str, sha256: &str) -> Result<(), String> {
        let device = self.active_device(id)?;
        let assigned = device.assignment.as_ref().map(|a| a.bundle_sha256.as_str());
        if assigned == Some(sha256) {
            Ok(())
        } else {
            metrics::counter!("edgewise_artifact_requests_refused_total").increment(1);
            Err(format!(
                "device {id:?} is not assigned artifact {sha256}; it may download only its current assignment's bundle"
            ))
        }
    }
}
