//! Telemetry ingestion and aggregation: windows from devices, de-duplicated on
//! `(device, window_seq)`, stored in sled with retention, and summed per device,
//! version and group on request. Captured examples are kept beside them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use edgewise_core::capture::CaptureRecord;
use edgewise_core::drift::psi;
use edgewise_core::telemetry::{LATENCY_BOUNDS_SECONDS, TelemetryWindow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::Result;
use crate::store::{Store, Table, version_key};

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
        // Durable at once: the device has already dropped it from its outbox.
        self.store.flush()?;
        Ok(true)
    }

    /// Windows matching `query`, oldest key first.
    pub fn windows(&self, query: &TelemetryQuery) -> Result<Vec<StoredWindow>> {
        let prefix = query
            .device
            .as_ref()
            .map_or_else(String::new, |device| format!("{device}/"));
        let since = query
            .since_seconds
            .map(|seconds| now_seconds().saturating_sub(seconds));
        // A time range without a device reads only the windows it needs.
        let candidates: Vec<StoredWindow> = match (since, &query.device) {
            (Some(since), None) => {
                let mut found = Vec::new();
                for (_, key) in self.by_time.scan_from(&format!("{since:010}/"))? {
                    found.extend(self.windows.get(&key)?);
                }
                found
            }
            _ => self
                .windows
                .scan(&prefix)?
                .into_iter()
                .map(|(_, stored)| stored)
                .collect(),
        };
        Ok(candidates
            .into_iter()
            .filter(|stored| {
                let w = &stored.window;
                query.group.as_ref().is_none_or(|g| &stored.group == g)
                    && query.model.as_ref().is_none_or(|m| &w.model == m)
                    && query.version.is_none_or(|v| w.version == v)
                    && since.is_none_or(|since| stored.received_at >= since)
            })
            .collect())
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

    /// Sums the windows matching `query`, with drift against the version's profile.
    pub fn summary(&self, query: &TelemetryQuery) -> Result<TelemetrySummary> {
        let windows = self.windows(query)?;
        let mut summary = summarize(windows.iter().map(|stored| &stored.window));
        let versions: std::collections::BTreeSet<(String, u64)> = windows
            .iter()
            .map(|s| (s.window.model.clone(), s.window.version))
            .collect();
        if let [(model, version)] = versions.into_iter().collect::<Vec<_>>().as_slice() {
            self.add_drift(
                &mut summary,
                model,
                *version,
                windows.iter().map(|s| &s.window),
            )?;
        }
        Ok(summary)
    }

    /// Fills in `summary`'s per-feature drift from `windows`, all of `model` `version`,
    /// against that version's reference profile.
    pub(crate) fn add_drift<'a>(
        &self,
        summary: &mut TelemetrySummary,
        model: &str,
        version: u64,
        windows: impl Iterator<Item = &'a TelemetryWindow>,
    ) -> Result<()> {
        if let Some(record) = self.store.versions.get(&version_key(model, version))? {
            summary.features = feature_drift(windows, &record.manifest.profile);
            summary.drifted_features = summary
                .features
                .iter()
                .filter(|f| f.drifted)
                .map(|f| f.name.clone())
                .collect();
        }
        Ok(())
    }

    /// Deletes windows and captures older than `retention`; returns how many windows went.
    pub fn expire(&self, retention: Duration) -> Result<usize> {
        let cutoff = now_seconds().saturating_sub(retention.as_secs());
        let mut removed = 0;
        for (index_key, key) in self.by_time.scan("")? {
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
        for (key, capture) in self.captures.scan("")? {
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

/// Sums windows (no drift).
pub fn summarize<'a>(windows: impl Iterator<Item = &'a TelemetryWindow>) -> TelemetrySummary {
    let mut summary = TelemetrySummary::default();
    let mut buckets = vec![0u64; LATENCY_BOUNDS_SECONDS.len() + 1];
    let mut devices = std::collections::BTreeSet::new();
    for window in windows {
        summary.windows += 1;
        devices.insert(window.device_id.clone());
        summary.requests += window.requests;
        summary.errors += window.errors;
        summary.examples += window.examples;
        summary.labelled += window.labelled;
        summary.correct += window.correct;
        for (total, count) in buckets.iter_mut().zip(&window.latency_buckets) {
            *total += count;
        }
        if summary.class_counts.len() < window.class_counts.len() {
            summary.class_counts.resize(window.class_counts.len(), 0);
        }
        for (total, count) in summary.class_counts.iter_mut().zip(&window.class_counts) {
            *total += count;
        }
        if let Some(shadow) = &window.shadow {
            summary.shadow_compared += shadow.compared;
            summary.shadow_agreed += shadow.agreed;
        }
    }
    summary.devices = devices.len() as u64;
    summary.error_rate =
        (summary.requests > 0).then(|| summary.errors as f64 / summary.requests as f64);
    summary.accuracy =
        (summary.labelled > 0).then(|| summary.correct as f64 / summary.labelled as f64);
    summary.latency_p50 = bucket_quantile(&buckets, 0.5);
    summary.latency_p99 = bucket_quantile(&buckets, 0.99);
    summary
}

/// The upper bound of the bucket holding quantile `q` (the last bound for the overflow).
fn bucket_quantile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(*LATENCY_BOUNDS_SECONDS.get(index).unwrap_or(&f64::INFINITY));
        }
    }
    None
}

/// Per-feature drift over windows of one version, against its reference profile.
pub fn feature_drift<'a>(
    windows: impl Iterator<Item = &'a TelemetryWindow>,
    profile: &edgewise_core::profile::DataProfile,
) -> Vec<FeatureDrift> {
    let mut pooled: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut ks: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for window in windows {
        for (index, feature) in window.features.iter().enumerate() {
            let counts = pooled
                .entry(index)
                .or_insert_with(|| vec![0; feature.counts.len()]);
            for (total, count) in counts.iter_mut().zip(&feature.counts) {
                *total += count;
            }
            if let (Some(statistic), Some(pvalue)) = (feature.ks_statistic, feature.ks_pvalue) {
                ks.entry(index).or_default().push((statistic, pvalue));
            }
        }
    }
    profile
        .features
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            let counts = pooled.get(&index).filter(|c| c.iter().any(|&n| n > 0));
            let psi = counts.and_then(|counts| {
                let live: Vec<f64> = counts.iter().map(|&n| n as f64).collect();
                psi(&reference.reference_frequencies, &live).ok()
            });
            let tests = ks.get(&index).filter(|t| !t.is_empty());
            let ks_drifted_share = tests.map(|t| {
                t.iter().filter(|(_, p)| *p < DRIFT_KS_PVALUE).count() as f64 / t.len() as f64
            });
            let ks_statistic = tests.map(|t| {
                let mut statistics: Vec<f64> = t.iter().map(|(d, _)| *d).collect();
                statistics.sort_by(f64::total_cmp);
                statistics[statistics.len() / 2]
            });
            let drifted = psi.is_some_and(|p| p > DRIFT_PSI_THRESHOLD)
                || ks_drifted_share.is_some_and(|share| share >= DRIFT_KS_WINDOW_SHARE);
            FeatureDrift {
                name: reference.name.clone(),
                psi,
                ks_drifted_share,
                ks_statistic,
                drifted,
            }
        })
        .collect()
}
