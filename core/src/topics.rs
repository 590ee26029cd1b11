//! MQTT topic names, device ids and the `status` payloads.
//!
//! Every device has five topics under `edgewise/v1/devices/{id}/`: `desired`
//! (control plane → node, retained signed assignment), `reported` (node → control
//! plane, retained state), `telemetry` (node → control plane), `receipts` (control
//! plane → node: which telemetry windows are stored) and `status` (retained `online`,
//! with `offline` as the last will).

use std::fmt;

/// The prefix of every device topic.
pub const DEVICE_TOPIC_PREFIX: &str = "edgewise/v1/devices";

/// Payload a node publishes on `status` when it connects.
pub const STATUS_ONLINE: &str = "online";

/// Payload of a node's last will on `status`.
pub const STATUS_OFFLINE: &str = "offline";

/// Longest accepted device id.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// The five per-device topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceTopic {
    /// Signed assignments, control plane → node.
    Desired,
    /// The node's state, node → control plane.
    Reported,
    /// Telemetry windows, node → control plane.
    Telemetry,
    /// `online` / `offline`, node → control plane.
    Status,
    /// Telemetry receipts, control plane → node.
    Receipts,
}

impl DeviceTopic {
    /// Every topic, in a fixed order.
    pub const ALL: [DeviceTopic; 5] = [
        DeviceTopic::Desired,
        DeviceTopic::Reported,
        DeviceTopic::Telemetry,
        DeviceTopic::Status,
        DeviceTopic::Receipts,
    ];

    /// The last topic level.
    pub fn suffix(self) -> &'static str {
        match self {
            DeviceTopic::Desired => "desired",
            DeviceTopic::Reported => "reported",
            DeviceTopic::Telemetry => "telemetry",
            DeviceTopic::Status => "status",
            DeviceTopic::Receipts => "receipts",
        }
    }

    /// The topic for `device_id`.
    pub fn for_device(self, device_id: &str) -> String {
        format!("{DEVICE_TOPIC_PREFIX}/{device_id}/{}", self.suffix())
    }

    /// The subscription filter matching this topic for every device.
    pub fn for_all_devices(self) -> String {
        format!("{DEVICE_TOPIC_PREFIX}/+/{}", self.suffix())
    }

    /// Splits a concrete topic into its device id and kind; `None` for any other topic.
    pub fn parse(topic: &str) -> Option<(&str, DeviceTopic)> {
        let rest = topic.strip_prefix(DEVICE_TOPIC_PREFIX)?.strip_prefix('/')?;
        let (device_id, suffix) = rest.split_once('/')?;
        let kind = DeviceTopic::ALL
            .into_iter()
            .find(|t| t.suffix() == suffix)?;
        check_device_id(device_id).ok()?;
        Some((device_id, kind))
    }
}

/// Why a device id was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdError(String);

impl fmt::Display for DeviceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceIdError {}

/// Checks that `id` can be a device id: 1 to 64 of `A-Z a-z 0-9 - _ .`, not starting
/// with `.` or `-`. Ids become topic levels, usernames and file names, so MQTT
/// wildcards, `/` and spaces are out.
pub fn check_device_id(id: &str) -> Result<(), DeviceIdError> {
    if id.is_empty() || id.len() > MAX_DEVICE_ID_LEN {
        return Err(DeviceIdError(format!(
            "must be 1 to {MAX_DEVICE_ID_LEN} characters, found {}",
            id.len()
        )));
    }
    if id.starts_with(['.', '-']) {
        return Err(DeviceIdError(format!(
            "{id:?} must not start with '.' or '-'"
        )));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(DeviceIdError(format!(
            "{id:?} holds {bad:?}; only letters, digits, '-', '_' and '.' are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_refuse_wildcards() {
        let topic = DeviceTopic::Desired.for_device("node-1");
        assert_eq!(topic, "edgewise/v1/devices/node-1/desired");
        assert_eq!(
            DeviceTopic::parse(&topic),
            Some(("node-1", DeviceTopic::Desired))
        );
        assert_eq!(DeviceTopic::parse("edgewise/v1/devices/+/desired"), None);
        assert_eq!(DeviceTopic::parse("edgewise/v1/devices/a/b/desired"), None);
        assert!(check_device_id("edge-01.lab_2").is_ok());
        for bad in ["", "a/b", "a+b", "#", "-x", "a b", &"x".repeat(65)] {
            assert!(check_device_id(bad).is_err(), "{bad:?}");
        }
    }
}
