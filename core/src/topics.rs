//! MQTT topic names, device ids and the `status` payloads.
//!
//! Every device has five topics under `edgewise/v1/devices/{id}/`: `desired`
//! (control plane → node, retained signed assignment), `reported` (node → control
//! plane, retained state), `telemetry` (node → control plane), `receipts` (control
//! plane → node: which telemetry windows are stored) and `status` (retained `online`,
//! with `offline` as the last will, each followed by the connection's epoch).

use std::fmt;

/// The prefix of every device topic.
pub const DEVICE_TOPIC_PREFIX: &str = "edgewise/v1/devices";

/// First word of the `status` a node publishes when it connects.
const STATUS_ONLINE: &str = "online";

/// First word of a node's last will on `status`.
const STATUS_OFFLINE: &str = "offline";

/// Longest `status` payload accepted.
const MAX_STATUS_BYTES: usize = 64;

/// A node's `status` payload: `online` or `offline`, then the epoch of the connection
/// it speaks for (`online 1764979200123`). A node's epochs grow with each connection,
/// so a late last will of an earlier connection, which a broker may deliver after the
/// next connection's `online`, is told apart and ignored. A bare `online` or
/// `offline` (no epoch) is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Whether the node is connected.
    pub online: bool,
    /// The connection's epoch.
    pub epoch: Option<u64>,
}

impl Status {
    /// Parses a payload; the error says what was expected.
    pub fn parse(payload: &[u8]) -> Result<Status, String> {
        const EXPECTED: &str =
            "status: expected `online` or `offline`, optionally followed by a space and an epoch";
        if payload.len() > MAX_STATUS_BYTES {
            return Err(format!(
                "{EXPECTED} (at most {MAX_STATUS_BYTES} bytes, got {})",
                payload.len()
            ));
        }
        let text = std::str::from_utf8(payload).map_err(|_| format!("{EXPECTED}, not UTF-8"))?;
        let (word, epoch) = match text.split_once(' ') {
            Some((word, epoch)) => (
                word,
                Some(
                    epoch
                        .parse::<u64>()
                        .map_err(|_| format!("{EXPECTED}; the epoch {epoch:?} is not one"))?,
                ),
            ),
            None => (text, None),
        };
        let online = match word {
            STATUS_ONLINE => true,
            STATUS_OFFLINE => false,
            _ => return Err(format!("{EXPECTED}, got {word:?}")),
        };
        Ok(Status { online, epoch })
    }

    /// The payload.
    pub fn to_payload(self) -> Vec<u8> {
        let word = if self.online {
            STATUS_ONLINE
        } else {
            STATUS_OFFLINE
        };
        match self.epoch {
            Some(epoch) => format!("{word} {epoch}").into_bytes(),
            None => word.as_bytes().to_vec(),
        }
    }

    /// Whether this is the last will of a connection older than `latest`, the epoch
    /// last recorded: news to ignore. An `online` always counts, so a node whose clock
    /// went back still shows up.
    pub fn is_stale(self, latest: Option<u64>) -> bool {
        !self.online
            && matches!((self.epoch, latest), (Some(epoch), Some(latest)) if epoch < latest)
    }
}

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
    fn statuses_round_trip_and_order_by_epoch() {
        for status in [
            Status {
                online: true,
                epoch: Some(7),
            },
            Status {
                online: false,
                epoch: None,
            },
        ] {
            assert_eq!(Status::parse(&status.to_payload()), Ok(status));
        }
        assert_eq!(
            Status::parse(b"online"),
            Ok(Status {
                online: true,
                epoch: None
            })
        );
        let late_will = Status {
            online: false,
            epoch: Some(5),
        };
        assert!(late_will.is_stale(Some(6)));
        assert!(!late_will.is_stale(Some(5)));
        assert!(!late_will.is_stale(None));
        assert!(
            !Status {
                online: true,
                epoch: Some(1)
            }
            .is_stale(Some(6))
        );
        for bad in [&b"up"[..], b"online x", b"online ", b"\xff", &[b'o'; 100]] {
            let err = Status::parse(bad).unwrap_err();
            assert!(err.starts_with("status: expected"), "{err}");
        }
    }

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
