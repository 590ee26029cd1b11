//! Telemetry ingestion and aggregation: windows from devices, de-duplicated on
//! `(device, window_seq)`, appended to segment files ([`crate::window_log`]) that
//! retention deletes whole, and summed per device, version and group on request.
//! Captured examples travel inside their windows; late labels are kept beside them.
//!
//! sled holds only the index: `window_index` (`{device}/{seq:020}` → where the window
//! lies), `window_segments` (`{segment:010}/{offset:012}` → the window's key, for
//! retention and crash recovery), `window_marks` (`{second:010}` → where the first
//! window that arrived in that second lies, so a time range starts reading there) and
//! `capture_labels`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use edgewise_core::capture::CaptureRecord;
use edgewise_core::profile::DataProfile;
use edgewise_core::telemetry::TelemetryWindow;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, Result};
use crate::store::{Store, Table, version_key};
use crate::telemetry_fold::WindowSums;
use crate::window_log::{Location, SEGMENT_SECONDS, WindowLog, segment_of};

/// PSI above which a feature counts as drifted (the usual "significant shift" line).
pub const DRIFT_PSI_THRESHOLD: f64 = 0.2;

/// KS p-value below which a window counts as drifted for a feature.
pub const DRIFT_KS_PVALUE: f64 = 0.001;

/// Share of a feature's windows that must fail KS for the feature to be flagged.
pub const DRIFT_KS_WINDOW_SHARE: f64 = 0.5;

/// How far before a time range's start its read begins: a window's arrival second is
/// taken just before it is appended, so lines are in arrival order only to a second or
/// two.
const MARK_SLACK_SECONDS: u64 = 10;

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

/// A captured example's late label, found by `{model}/{device}/{capture id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaptureLabel {
    /// The segment of the window that carried the capture (for retention).
    segment: u64,
    /// The label, once one came.
    label: Option<String>,
}

/// The telemetry store.
#[derive(Clone)]
pub struct TelemetryStore {
    pub(crate) store: Store,
    log: Arc<WindowLog>,
    /// `{device}/{seq:020}` → where the window lies.
    index: Table<Location>,
    /// `{segment:010}/{offset:012}` → the window's key.
    by_segment: Table<String>,
    /// `{second:010}` → the first window that arrived in that second.
    marks: Table<Location>,
    /// `{model}/{device}/{capture id}` → its label.
    labels: Table<CaptureLabel>,
    /// Serialises the check for a duplicate, the append and the index entries; holds
    /// the newest second in `marks`.
    ingest_lock: Arc<Mutex<u64>>,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn window_key(device: &str, window_seq: u64) -> String {
    format!("{device}/{window_seq:020}")
}

fn segment_key(at: Location) -> String {
    format!("{:010}/{:012}", at.segment, at.offset)
}

fn io_error(err: std::io::Error) -> Error {
    Error::Internal(format!("telemetry segments: {err}"))
}

/// Decodes one stored line; a line that does not decode is logged and skipped.
fn decode_line(at: Location, line: &[u8]) -> Option<StoredWindow> {
    match serde_json::from_slice(line) {
        Ok(stored) => Some(stored),
        Err(err) => {
            tracing::warn!(segment = at.segment, offset = at.offset, error = %err, "skipped a telemetry line that does not decode");
            None
        }
    }
}

impl TelemetryStore {
    /// The telemetry of `store`, its windows in segment files under `dir`. Repairs
    /// what a crash left half written, and moves windows kept in sled by earlier
    /// versions into segments.
    pub fn open(store: Store, dir: &Path) -> Result<Self> {
        let telemetry = TelemetryStore {
            log: Arc::new(WindowLog::open(dir).map_err(io_error)?),
            index: store.table("window_index")?,
            by_segment: store.table("window_segments")?,
            marks: store.table("window_marks")?,
            labels: store.table("capture_labels")?,
            ingest_lock: Arc::new(Mutex::new(0)),
            store,
        };
        telemetry.recover()?;
        let newest_mark = telemetry
            .marks
            .last_key()?
            .and_then(|second| second.parse().ok())
            .unwrap_or(0);
        *telemetry
            .ingest_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = newest_mark;
        crate::telemetry_migration::move_sled_windows(&telemetry)?;
        Ok(telemetry)
    }

    /// After a crash the newest segments may end in lines that were never indexed
    /// (never acknowledged, so their nodes send them again), and the index may name
    /// lines a power cut took away: both go.
    fn recover(&self) -> Result<()> {
        let segments = self.log.segments().map_err(io_error)?;
        let Some(&newest) = segments.last() else {
            return Ok(());
        };
        for &segment in segments.iter().filter(|s| **s + SEGMENT_SECONDS >= newest) {
            let on_disk = self.log.len_on_disk(segment).map_err(io_error)?;
            let mut whole = 0;
            for entry in self.by_segment.iter_prefix(&format!("{segment:010}/")) {
                let (position, key) = entry?;
                match self.index.get(&key)? {
                    Some(at) if at.segment == segment && at.offset + at.len <= on_disk => {
                        whole = whole.max(at.offset + at.len)
                    }
                    Some(at) if at.segment == segment => {
                        self.index.remove(&key)?;
                        self.by_segment.remove(&position)?;
                    }
                    _ => {
                        self.by_segment.remove(&position)?;
                    }
                }
            }
            // A time range must not start past the lines that are left.
            self.remove_marks(segment, whole)?;
            if whole < on_disk {
                tracing::warn!(
                    segment,
                    kept = whole,
                    dropped = on_disk - whole,
                    "cut unacknowledged telemetry from the end of a segment"
                );
                self.log.truncate(segment, whole).map_err(io_error)?;
            }
        }
        self.store.flush()?;
        Ok(())
    }

    /// Removes the time marks of `segment` that point at byte `from` or later.
    fn remove_marks(&self, segment: u64, from: u64) -> Result<()> {
        for entry in self.marks.iter_from(&format!("{segment:010}")) {
            let (second, at) = entry?;
            if at.segment != segment {
                break;
            }
            if at.offset >= from {
                self.marks.remove(&second)?;
            }
        }
        Ok(())
    }

    /// Makes every stored window durable (before its receipt goes out).
    pub fn flush(&self) -> Result<()> {
        self.log.sync().map_err(io_error)?;
        self.store.flush()?;
        Ok(())
    }

    /// Whether `device`'s window `window_seq` is stored.
    pub fn contains(&self, device: &str, window_seq: u64) -> Result<bool> {
        Ok(self.index.get(&window_key(device, window_seq))?.is_some())
    }

    /// Stores a window unless it is a duplicate; returns whether it was new.
    pub fn ingest(&self, group: &str, window: TelemetryWindow) -> Result<bool> {
        let stored = StoredWindow {
            group: group.to_owned(),
            received_at: now_seconds(),
            window,
        };
        let new = self.append(&stored)?;
        if !new {
            metrics::counter!("edgewise_telemetry_windows_duplicate_total").increment(1);
            return Ok(false);
        }
        let window = &stored.window;
        metrics::counter!("edgewise_telemetry_windows_ingested_total").increment(1);
        metrics::counter!("edgewise_fleet_requests_total", "model" => window.model.clone(), "version" => window.version.to_string()).increment(window.requests);
        metrics::counter!("edgewise_fleet_request_errors_total", "model" => window.model.clone(), "version" => window.version.to_string()).increment(window.errors);
        if let Ok(ended) = humantime::parse_rfc3339_weak(&window.ended_at) {
            let lag = SystemTime::now()
                .duration_since(ended)
                .unwrap_or(Duration::ZERO);
            metrics::histogram!("edgewise_telemetry_ingest_lag_seconds").record(lag.as_secs_f64());
        }
        metrics::gauge!("edgewise_telemetry_last_received_timestamp_seconds")
            .set(stored.received_at as f64);
        // Not flushed here: the receipts task flushes each batch before it tells the
        // devices, and a device keeps every window until then.
        Ok(true)
    }

    /// Appends `stored` and indexes it, unless its key is taken; returns whether it was.
    pub(crate) fn append(&self, stored: &StoredWindow) -> Result<bool> {
        let window = &stored.window;
        let key = window_key(&window.device_id, window.window_seq);
        let line = serde_json::to_vec(stored)
            .map_err(|e| Error::Internal(format!("cannot encode a telemetry window: {e}")))?;
        let mut newest_mark = self
            .ingest_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.index.get(&key)?.is_some() {
            return Ok(false);
        }
        let at = self
            .log
            .append(stored.received_at, &line)
            .map_err(io_error)?;
        if let Err(err) = self.index_window(&key, at, window) {
            let _ = self.index.remove(&key);
            let _ = self.by_segment.remove(&segment_key(at));
            self.log.undo(at).map_err(io_error)?;
            return Err(err);
        }
        if stored.received_at > *newest_mark {
            self.marks
                .put(&format!("{:010}", stored.received_at), &at)?;
            *newest_mark = stored.received_at;
        }
        Ok(true)
    }

    fn index_window(&self, key: &str, at: Location, window: &TelemetryWindow) -> Result<()> {
        self.index.put(key, &at)?;
        self.by_segment.put(&segment_key(at), &key.to_owned())?;
        for capture in &window.captures {
            if let Some(id) = &capture.id {
                self.labels.put(
                    &format!("{}/{}/{id}", capture.model, window.device_id),
                    &CaptureLabel {
                        segment: at.segment,
                        label: capture.label.clone(),
                    },
                )?;
            }
        }
        for late in &window.late_labels {
            let index = format!("{}/{}/{}", window.model, window.device_id, late.id);
            if let Some(mut known) = self.labels.get(&index)? {
                known.label = Some(late.label.clone());
                self.labels.put(&index, &known)?;
            }
        }
        Ok(())
    }

    /// Records the late label of a capture, when the capture is known (for moving
    /// windows kept by earlier versions).
    pub(crate) fn set_label(&self, model: &str, device: &str, id: &str, label: &str) -> Result<()> {
        let index = format!("{model}/{device}/{id}");
        if let Some(mut known) = self.labels.get(&index)? {
            known.label = Some(label.to_owned());
            self.labels.put(&index, &known)?;
        }
        Ok(())
    }

    /// Windows matching `query`, in the order [`TelemetryStore::for_each_window`] gives.
    pub fn windows(&self, query: &TelemetryQuery) -> Result<Vec<StoredWindow>> {
        let mut found = Vec::new();
        self.for_each_window(query, |stored| found.push(stored))?;
        Ok(found)
    }

    /// Calls `visit` with each window matching `query`, decoding one at a time: one
    /// device's windows in `window_seq` order (read through the index), else every
    /// window in arrival order (reading only the segments the time range reaches).
    pub fn for_each_window(
        &self,
        query: &TelemetryQuery,
        mut visit: impl FnMut(StoredWindow),
    ) -> Result<()> {
        let since = query
            .since_seconds
            .map(|seconds| now_seconds().saturating_sub(seconds));
        let mut offer = |at: Location, line: &[u8]| {
            let Some(stored) = decode_line(at, line) else {
                return;
            };
            let w = &stored.window;
            if query.group.as_ref().is_none_or(|g| &stored.group == g)
                && query.model.as_ref().is_none_or(|m| &w.model == m)
                && query.version.is_none_or(|v| w.version == v)
                && since.is_none_or(|since| stored.received_at >= since)
            {
                visit(stored);
            }
        };
        match &query.device {
            Some(device) => {
                let locations = self
                    .index
                    .iter_prefix(&format!("{device}/"))
                    .filter(|entry| {
                        entry.as_ref().map_or(true, |(_, at)| {
                            since.is_none_or(|since| at.segment >= segment_of(since))
                        })
                    })
                    .map(|entry| entry.map(|(_, at)| at))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                self.log.read_each(locations, offer).map_err(io_error)?;
            }
            None => {
                let start = match since {
                    Some(since) => {
                        let from = format!("{:010}", since.saturating_sub(MARK_SLACK_SECONDS));
                        match self.marks.iter_from(&from).next().transpose()? {
                            Some((_, at)) => at,
                            None => return Ok(()),
                        }
                    }
                    None => Location {
                        segment: 0,
                        offset: 0,
                        len: 0,
                    },
                };
                for segment in self.log.segments().map_err(io_error)? {
                    if segment >= start.segment {
                        let from = if segment == start.segment {
                            start.offset
                        } else {
                            0
                        };
                        self.log
                            .for_each_line(segment, from, &mut offer)
                            .map_err(io_error)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Captured examples of `model`, optionally of one version.
    pub fn captures(&self, model: &str, version: Option<u64>) -> Result<Vec<CaptureRecord>> {
        Ok(self
            .captures_by_device(model)?
            .into_iter()
            .map(|(_, capture)| capture)
            .filter(|capture| version.is_none_or(|v| capture.version == v))
            .collect())
    }

    /// Captured examples of `model` with the device that captured each, by device and
    /// then in capture order, each with its late label when one came.
    pub fn captures_by_device(&self, model: &str) -> Result<Vec<(String, CaptureRecord)>> {
        let mut found: Vec<((String, u64, usize), CaptureRecord)> = Vec::new();
        self.for_each_window(&TelemetryQuery::default(), |stored| {
            let (device, seq) = (stored.window.device_id, stored.window.window_seq);
            for (index, capture) in stored.window.captures.into_iter().enumerate() {
                if capture.model == model {
                    found.push(((device.clone(), seq, index), capture));
                }
            }
        })?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut captures = Vec::with_capacity(found.len());
        for ((device, _, _), mut capture) in found {
            if let Some(id) = &capture.id
                && let Some(known) = self.labels.get(&format!("{model}/{device}/{id}"))?
                && known.label.is_some()
            {
                capture.label = known.label;
            }
            captures.push((device, capture));
        }
        Ok(captures)
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

    /// Deletes the windows (and their captures) of every segment wholly older than
    /// `retention`; returns how many windows went.
    pub fn expire(&self, retention: Duration) -> Result<usize> {
        let cutoff = now_seconds().saturating_sub(retention.as_secs());
        let mut removed = 0;
        for segment in self.log.segments().map_err(io_error)? {
            if segment + SEGMENT_SECONDS > cutoff {
                break;
            }
            let _ingest = self
                .ingest_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for entry in self.by_segment.iter_prefix(&format!("{segment:010}/")) {
                let (position, key) = entry?;
                self.index.remove(&key)?;
                self.by_segment.remove(&position)?;
                removed += 1;
            }
            self.remove_marks(segment, 0)?;
            self.store.flush()?;
            self.log.remove(segment).map_err(io_error)?;
        }
        for entry in self.labels.iter_prefix("") {
            let (key, known) = entry?;
            if known.segment + SEGMENT_SECONDS <= cutoff {
                self.labels.remove(&key)?;
            }
        }
        Ok(removed)
    }

    /// When the newest stored window arrived (Unix seconds).
    pub fn last_received_at(&self) -> Result<Option<u64>> {
        let Some(position) = self.by_segment.last_key()? else {
            return Ok(None);
        };
        let Some(key) = self.by_segment.get(&position)? else {
            return Ok(None);
        };
        let Some(at) = self.index.get(&key)? else {
            return Ok(None);
        };
        let mut newest = None;
        self.log
            .read_each([at], |at, line| {
                newest = decode_line(at, line).map(|stored| stored.received_at);
            })
            .map_err(io_error)?;
        Ok(newest)
    }
}

#[cfg(test)]
#[path = "telemetry_store_tests.rs"]
mod tests;
