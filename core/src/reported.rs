//! The state a node reports on its retained `reported` topic.

use serde::{Deserialize, Serialize};

/// Largest accepted `reported` payload, in bytes.
pub const MAX_REPORTED_BYTES: usize = 16 * 1024;

/// Where a node is in applying its latest assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePhase {
    /// No update in progress; serving the active version (if any).
    Idle,
    /// Fetching the bundle bytes.
    Downloading,
    /// Checking the hash, the signatures and the self-test.
    Verifying,
    /// The new version serves; the update finished.
    Applied,
    /// The latest assignment was refused or failed; the previous model keeps serving.
    Failed,
}

/// One installed model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledVersion {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: u64,
    /// sha256 of the bundle file.
    pub bundle_sha256: String,
}

/// A node's report of what it runs and how its last update went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedState {
    /// The reporting device.
    pub device_id: String,
    /// The version serving now.
    pub active: Option<InstalledVersion>,
    /// The version kept for instant local fallback.
    pub previous: Option<InstalledVersion>,
    /// A candidate running in shadow beside the active version (its answers are not served).
    #[serde(default)]
    pub shadow: Option<InstalledVersion>,
    /// The update phase.
    pub phase: UpdatePhase,
    /// The seq of the assignment this report is about (the last one seen).
    pub seq: u64,
    /// The highest seq applied successfully.
    pub applied_seq: u64,
    /// Why the last assignment failed, when `phase` is `failed`.
    pub failure: Option<String>,
    /// `gpu` or `cpu`.
    pub backend: String,
    /// The GPU adapter or CPU name.
    pub adapter: String,
    /// The runtime's version.
    pub runtime_version: String,
    /// When this report was made (RFC 3339).
    pub reported_at: String,
    /// The version of each key set the node trusts.
    #[serde(default)]
    pub key_versions: KeyVersions,
}

/// Which version of each key set a node trusts (see [`crate::rotation`]); 0 when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVersions {
    /// Version of the release keys.
    pub release: u64,
    /// Version of the deployment keys.
    pub deployment: u64,
}

impl ReportedState {
    /// Parses a report, refusing anything over [`MAX_REPORTED_BYTES`]; the error names the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        crate::json::parse_bounded(bytes, MAX_REPORTED_BYTES, "report")
    }
}
