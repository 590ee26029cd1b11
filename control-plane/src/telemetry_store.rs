//! Telemetry ingestion and aggregation: windows from devices, de-duplicated on
//! `(device, window_seq)`, stored in sled with retention, and summed per device,
//! version and group on request. Captured examples are kept beside them.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use edgewise_core::capture::CaptureRecord;
use edgewise_core::profile::DataProfile;
use edgewise_core::telemetry::TelemetryWindow;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::store::{Store, Table, version_key};
use crate::telemetry_fold::WindowSums;

/// PSI above which a feature counts as drifted (the usual "significant shift" line).
pub const DRIFT_PSI_THRESHOLD: f64 = 0.2;

/// KS p-value below which a window counts as drifted for a feature.
pub const DRIFT_KS_PVALUE: f64 = 0.001;

/// Share of a feature's windows that must fail KS for the feature to be flagged.
pub const DRIFT_KS_WINDOW_SHARE: f64 = 0.5;

/// A window as stored, with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredWindow {
    /// The device's group when the window arrived.
    pub group: String,
    /// Seconds since the epoch when it arrived.
    pub received_at: u64,
    /// The window.
    pub window: TelemetryWindow,
}

/// What to sum.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct TelemetryQuery {
    /// Only this device.
    pub device: Option<String>,
    /// Only devices of this group.
    pub group: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this version.
    pub version: Option<u64>,
    /// Only windows received in the last N seconds.
    pub since_seconds: Option<u64>,
}

/// Drift of one feature over the matched windows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeatureDrift {
    /// Feature name.
    pub name: String,
    /// PSI of the pooled live counts against the reference frequencies.
    pub psi: Option<f64>,
    /// Share of windows whose KS p-value was below [`DRIFT_KS_PVALUE`].
    pub ks_drifted_share: Option<f64>,
    /// Median KS statistic over the windows.
    pub ks_statistic: Option<f64>,
    /// Whether the feature is flagged as drifted.
    pub drifted: bool,
}

/// Sums over the matched windows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TelemetrySummary {
    /// Windows matched.
    pub windows: u64,
    /// Devices that sent them.
    pub devices: u64,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: Option<f64>,
    /// Examples predicted.
    pub examples: u64,
    /// Median latency (upper bound of its histogram bucket), seconds.
    pub latency_p50: Option<f64>,
    /// 99th-percentile latency (upper bound of its bucket), seconds.
    pub latency_p99: Option<f64>,
    /// Predictions per class.
    pub class_counts: Vec<u64>,
    /// Labelled predictions.
    pub labelled: u64,
    /// Of those, correct.
    pub correct: u64,
    /// `correct / labelled`.
    pub accuracy: Option<f64>,
    /// Shadow comparisons.
    pub shadow_compared: u64,
    /// Of those, agreeing.
    pub shadow_agreed: u64,
    /// Per-feature drift (when all windows are of one model version).
    pub features: Vec<FeatureDrift>,
    /// Names of the drifted features.
    pub drifted_features: Vec<String>,
}

/// The telemetry store.
#[derive(Clone)]
pub struct TelemetryStore {
    pub(crate) store: Store,
    windows: Table<StoredWindow>,
    /// `{received_at:010}/{device}/{seq:020}` → the window's key, for time-range queries.
    pub(crate) by_time: Table<String>,
    captures: Table<CaptureRecord>,
    /// `{model}/{device}/{request id}` → the capture's key, so a late label finds its
    /// capture without a scan.
    capture_ids: Table<String>,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TelemetryStore {
    /// The telemetry trees of `store`.
    pub fn new(store: Store) -> Result<Self> {
        Ok(TelemetryStore {
            windows: store.table("windows")?,
            by_time: store.table("windows_by_time")?,
            captures: store.table("captures")?,
            capture_ids: store.table("capture_ids")?,
            store,
        })
    }

    /// Stores a window unless it is a duplicate; returns whether it was new.
    pub fn ingest(&self, group: &str, window: TelemetryWindow) -> Result<bool> {
        let key = format!("{}/{:020}", window.device_id, window.window_seq);
        if self.windows.get(&key)?.is_some() {
            metrics::counter!("edgewise_telemetry_windows_duplicate_total").increment(1);
            return Ok(false);
        }
        for (index, capture) in window.captures.iter().enumerate() {
            let capture_key = format!(
                "{}/{}/{:020}/{index:04}",
                capture.model, window.device_id, window.window_seq
            );
            self.captures.put(&capture_key, capture)?;
            if let Some(id) = &capture.id {
                self.capture_ids.put(
                    &format!("{}/{}/{id}", capture.model, window.device_id),
                    &capture_key,
                )?;
            }
        }
        for late in &window.late_labels {
            let index = format!("{}/{}/{}", window.model, window.device_id, late.id);
            if let Some(capture_key) = self.capture_ids.get(&index)?
                && let Some(mut capture) = self.captures.get(&capture_key)?
            {
                capture.label = Some(late.label.clone());
                self.captures.put(&capture_key, &capture)?;
            }
        }
        metrics::counter!("edgewise_telemetry_windows_ingested_total").increment(1);
        metrics::counter!("edgewise_fleet_requests_total", "model" => window.model.clone(), "version" => window.version.to_string()).increment(window.requests);
        metrics::counter!("edgewise_fleet_request_errors_total", "model" => window.model.clone(), "version" => window.version.to_string()).increment(window.errors);
        if let Ok(ended) = humantime::parse_rfc3339_weak(&window.ended_at) {
            let lag = SystemTime::now()
                .duration_since(ended)
                .unwrap_or(Duration::ZERO);
            metrics::histogram!("edgewise_telemetry_ingest_lag_seconds").record(lag.as_secs_f64());
        }
        let stored = StoredWindow {
            group: group.to_owned(),
            received_at: now_seconds(),
            window,
        };
        metrics::gauge!("edgewise_telemetry_last_received_timestamp_seconds")
            .set(stored.received_at as f64);
        self.by_time
            .put(&format!("{:010}/{key}", stored.received_at), &key)?;
        self.windows.put(&key, &stored)?;
        // Not flushed here: the receipts task flushes each batch before it tells the
        // devices, and a device keeps every window until then.
        Ok(true)
    }

    /// Windows matching `query`, oldest key first.
    pub fn windows(&self, query: &TelemetryQuery) -> Result<Vec<StoredWindow>> {
        let mut found = Vec::new();
        self.for_each_window(query, |stored| found.push(stored))?;
        Ok(found)
    }

    /// Calls `visit` with each window matching `query`, decoding one at a time: oldest
    /// first for a time range over every device (read through the time index, so only
    /// the windows it needs), else in key order.
    pub fn for_each_window(
        &self,
        query: &TelemetryQuery,
        mut visit: impl FnMut(StoredWindow),
    ) -> Result<()> {
        let since = query
            .since_seconds
            .map(|seconds| now_seconds().saturating_sub(seconds));
        let mut offer = |stored: StoredWindow| {
            let w = &stored.window;
            if query.group.as_ref().is_none_or(|g| &stored.group == g)
                && query.model.as_ref().is_none_or(|m| &w.model == m)
                && query.version.is_none_or(|v| w.version == v)
                && since.is_none_or(|since| stored.received_at >= since)
            {
                visit(stored);
            }
        };
        match (since, &query.device) {
            (Some(since), None) => {
                for entry in self.by_time.iter_from(&format!("{since:010}/")) {
                    let (_, key) = entry?;
                    if let Some(stored) = self.windows.get(&key)? {
                        offer(stored);
                    }
                }
            }
            (_, device) => {
                let prefix = device
                    .as_ref()
                    .map_or_else(String::new, |device| format!("{device}/"));
                for entry in self.windows.iter_prefix(&prefix) {
                    offer(entry?.1);
                }
            }
        }
        Ok(())
    }

    /// Captured examples of `model`, optionally of one version.
    pub fn captures(&self, model: &str, version: Option<u64>) -> Result<Vec<CaptureRecord>> {
        Ok(self
            .captures
            .scan(&format!("{model}/"))?
            .into_iter()
            .map(|(_, capture)| capture)
            .filter(|capture| version.is_none_or(|v| capture.version == v))
            .collect())
    }

    /// Captured examples of `model` with the device that captured each.
    pub fn captures_by_device(&self, model: &str) -> Result<Vec<(String, CaptureRecord)>> {
        Ok(self
            .captures
            .scan(&format!("{model}/"))?
            .into_iter()
            .map(|(key, capture)| {
                let device = key.split('/').nth(1).unwrap_or_default().to_owned();
                (device, capture)
            })
            .collect())
    }

    /// Sums the windows matching `query`, with drift against the version's profile
    /// when they are all of one version.
    pub fn summary(&self, query: &TelemetryQuery) -> Result<TelemetrySummary> {
        let mut sums = WindowSums::default();
        let mut versions: BTreeSet<(String, u64)> = BTreeSet::new();
        self.for_each_window(query, |stored| {
            sums.add(&stored.window);
            let version = (stored.window.model, stored.window.version);
            if versions.len() < 2 {
                versions.insert(version);
            }
        })?;
        let single = match versions.into_iter().collect::<Vec<_>>().as_slice() {
            [(model, version)] => self.profile(model, *version)?,
            _ => None,
        };
        Ok(match single {
            Some(profile) => sums.summary_with_drift(&profile),
            None => sums.summary(),
        })
    }

    /// The reference profile of `model` `version`, if it is registered.
    pub(crate) fn profile(&self, model: &str, version: u64) -> Result<Option<DataProfile>> {
        Ok(self
            .store
            .versions
            .get(&version_key(model, version))?
            .map(|record| record.manifest.profile))
    }

    /// Deletes windows and captures older than `retention`; returns how many windows went.
    pub fn expire(&self, retention: Duration) -> Result<usize> {
        let cutoff = now_seconds().saturating_sub(retention.as_secs());
        let mut removed = 0;
        for entry in self.by_time.iter_prefix("") {
            let (index_key, key) = entry?;
            if index_key >= format!("{cutoff:010}/") {
                break;
            }
            self.windows.remove(&key)?;
            self.by_time.remove(&index_key)?;
            removed += 1;
        }
        let cutoff_text =
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(cutoff))
                .to_string();
        for entry in self.captures.iter_prefix("") {
            let (key, capture) = entry?;
            if capture.captured_at < cutoff_text {
                self.captures.remove(&key)?;
                if let (Some(id), Some(device)) = (&capture.id, key.split('/').nth(1)) {
                    self.capture_ids
                        .remove(&format!("{}/{device}/{id}", capture.model))?;
                }
            }
        }
        Ok(removed)
    }
}
