//! Telemetry windows: what a node saw in the last N seconds, sent on its `telemetry`
//! topic. [`WindowBuilder`] accumulates requests as they happen and closes a window
//! into a [`TelemetryWindow`], with per-feature PSI and KS against the bundle's
//! reference profile.

use serde::{Deserialize, Serialize};

use crate::capture::{CaptureRecord, LateLabel};
use crate::drift::{ks_2samp, psi};
use crate::profile::DataProfile;

/// Largest accepted window payload, in bytes.
pub const MAX_WINDOW_BYTES: usize = 512 * 1024;

/// Largest accepted telemetry receipt, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 64 * 1024;

/// The control plane's word that it stored a device's telemetry windows: published on
/// the device's `receipts` topic once the windows are durable (duplicates included). A
/// node drops a window from its outbox only on such a receipt, so a window that a broker
/// accepted but never delivered (a broker restart, a control plane not yet subscribed)
/// is sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryReceipt {
    /// The `window_seq` of each stored window.
    pub window_seqs: Vec<u64>,
}

impl TelemetryReceipt {
    /// Parses a receipt, refusing anything over [`MAX_RECEIPT_BYTES`]; errors name the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        crate::json::parse_bounded(bytes, MAX_RECEIPT_BYTES, "receipt")
    }
}

/// Upper bounds, in seconds, of the latency histogram's buckets (the last is +inf).
pub const LATENCY_BOUNDS_SECONDS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];

/// Most latency samples a window keeps for rank tests.
pub const MAX_LATENCY_SAMPLES: usize = 512;

/// Most live values per feature a window keeps for the KS test.
pub const MAX_FEATURE_SAMPLES: usize = 512;

/// Drift of one input feature in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWindow {
    /// Feature name.
    pub name: String,
    /// Live values per reference bin.
    pub counts: Vec<u64>,
    /// PSI of `counts` against the reference frequencies (None without data).
    pub psi: Option<f64>,
    /// KS statistic of the live sample against the reference sample.
    pub ks_statistic: Option<f64>,
    /// Its two-sided p-value.
    pub ks_pvalue: Option<f64>,
}

/// Shadow-mode comparison counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowWindow {
    /// The shadow model's version.
    pub version: u64,
    /// Examples both models answered.
    pub compared: u64,
    /// Examples where both chose the same class.
    pub agreed: u64,
}

/// One closed telemetry window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryWindow {
    /// The reporting device.
    pub device_id: String,
    /// Increases by one per window; the control plane de-duplicates on `(device_id, window_seq)`.
    pub window_seq: u64,
    /// The model that served.
    pub model: String,
    /// Its version.
    pub version: u64,
    /// Window start (RFC 3339).
    pub started_at: String,
    /// Window end (RFC 3339).
    pub ended_at: String,
    /// Requests answered or refused.
    pub requests: u64,
    /// Requests that failed (4xx or 5xx).
    pub errors: u64,
    /// Examples predicted.
    pub examples: u64,
    /// Request latency counts per [`LATENCY_BOUNDS_SECONDS`] bucket, plus one overflow bucket.
    pub latency_buckets: Vec<u64>,
    /// Up to [`MAX_LATENCY_SAMPLES`] request latencies in seconds, for rank tests.
    pub latency_samples: Vec<f64>,
    /// Requests per batch size, as `[size, count]` pairs.
    pub batch_sizes: Vec<[u64; 2]>,
    /// Predictions per output class.
    pub class_counts: Vec<u64>,
    /// Per-feature drift against the reference profile.
    pub features: Vec<FeatureWindow>,
    /// Predictions whose true label arrived in this window.
    pub labelled: u64,
    /// Of those, how many were right.
    pub correct: u64,
    /// Shadow comparison, when a shadow model ran.
    #[serde(default)]
    pub shadow: Option<ShadowWindow>,
    /// Captured examples.
    #[serde(default)]
    pub captures: Vec<CaptureRecord>,
    /// Labels for examples captured in earlier windows.
    #[serde(default)]
    pub late_labels: Vec<LateLabel>,
}

impl TelemetryWindow {
    /// Parses a window, refusing anything over [`MAX_WINDOW_BYTES`]; errors name the field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        crate::json::parse_bounded(bytes, MAX_WINDOW_BYTES, "window")
    }

    /// Accuracy over the labelled predictions, if any.
    pub fn accuracy(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64)
    }
}

/// A bounded uniform sample (reservoir sampling, Algorithm R) with a seeded generator.
#[derive(Debug, Clone)]
pub struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    capacity: usize,
    state: u64,
}

impl Reservoir {
    /// An empty sample of at most `capacity` values; `seed` fixes which are kept.
    pub fn new(capacity: usize, seed: u64) -> Self {
        Reservoir {
            values: Vec::new(),
            seen: 0,
            capacity,
            state: seed | 1,
        }
    }

    /// Offers `value`: kept at once while there is room, else in place of a random one.
    pub fn push(&mut self, value: f64) {
        self.seen += 1;
        if self.values.len() < self.capacity {
            self.values.push(value);
            return;
        }
        // xorshift64*: cheap, and uniform enough to pick a slot.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let slot = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.seen;
        if let Some(kept) = self.values.get_mut(slot as usize) {
            *kept = value;
        }
    }

    /// The values kept.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

/// Accumulates one window.
#[derive(Debug, Clone)]
pub struct WindowBuilder {
    model: String,
    version: u64,
    started_at: String,
    requests: u64,
    errors: u64,
    examples: u64,
    latency_buckets: Vec<u64>,
    latencies: Reservoir,
    batch_sizes: std::collections::BTreeMap<u64, u64>,
    class_counts: Vec<u64>,
    feature_counts: Vec<Vec<u64>>,
    feature_samples: Vec<Reservoir>,
    labelled: u64,
    correct: u64,
    shadow: Option<ShadowWindow>,
}

impl WindowBuilder {
    /// An empty window for `model` `version` with this profile, starting at `started_at`.
    pub fn new(model: &str, version: u64, profile: &DataProfile, started_at: String) -> Self {
        WindowBuilder {
            model: model.to_owned(),
            version,
            started_at,
            requests: 0,
            errors: 0,
            examples: 0,
            latency_buckets: vec![0; LATENCY_BOUNDS_SECONDS.len() + 1],
            latencies: Reservoir::new(MAX_LATENCY_SAMPLES, 0x9E37_79B9),
            batch_sizes: Default::default(),
            class_counts: vec![0; profile.class_frequencies.len()],
            feature_counts: profile
                .features
                .iter()
                .map(|f| vec![0; f.bin_edges.len() + 1])
                .collect(),
            feature_samples: (0..profile.features.len())
                .map(|i| Reservoir::new(MAX_FEATURE_SAMPLES, 0x51_7CC1 + i as u64))
                .collect(),
            labelled: 0,
            correct: 0,
            shadow: None,
        }
    }

    /// The model and version this window is about.
    pub fn model(&self) -> (&str, u64) {
        (&self.model, self.version)
    }

    /// Records one answered request: its raw inputs (row-major), chosen classes and latency.
    pub fn record_success(
        &mut self,
        profile: &DataProfile,
        inputs: &[f32],
        classes: &[usize],
        latency_seconds: f64,
    ) {
        self.record_request(latency_seconds);
        let width = profile.features.len().max(1);
        self.examples += classes.len() as u64;
        *self.batch_sizes.entry(classes.len() as u64).or_insert(0) += 1;
        for &class in classes {
            if let Some(count) = self.class_counts.get_mut(class) {
                *count += 1;
            }
        }
        for row in inputs.chunks(width) {
            for ((feature, value), (counts, sample)) in profile.features.iter().zip(row).zip(
                self.feature_counts
                    .iter_mut()
                    .zip(self.feature_samples.iter_mut()),
            ) {
                let value = f64::from(*value);
                counts[feature.bin_index(value)] += 1;
                sample.push(value);
            }
        }
    }

    /// Records one failed request.
    pub fn record_error(&mut self, latency_seconds: f64) {
        self.record_request(latency_seconds);
        self.errors += 1;
    }

    fn record_request(&mut self, latency_seconds: f64) {
        self.requests += 1;
        let bucket = LATENCY_BOUNDS_SECONDS.partition_point(|&bound| bound < latency_seconds);
        self.latency_buckets[bucket] += 1;
        self.latencies.push(latency_seconds);
    }

    /// Records a true label for an earlier prediction.
    pub fn record_label(&mut self, correct: bool) {
        self.labelled += 1;
        self.correct += u64::from(correct);
    }

    /// Records a shadow comparison of one example.
    pub fn record_shadow(&mut self, version: u64, agreed: bool) {
        let shadow = self.shadow.get_or_insert(ShadowWindow {
            version,
            compared: 0,
            agreed: 0,
        });
        shadow.compared += 1;
        shadow.agreed += u64::from(agreed);
    }

    /// Closes the window, computing drift against `profile`.
    pub fn close(
        self,
        profile: &DataProfile,
        device_id: &str,
        window_seq: u64,
        ended_at: String,
    ) -> TelemetryWindow {
        let features = profile
            .features
            .iter()
            .zip(self.feature_counts)
            .zip(self.feature_samples)
            .map(|((feature, counts), sample)| {
                let has_data = counts.iter().any(|&c| c > 0);
                let live: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
                let psi = has_data
                    .then(|| psi(&feature.reference_frequencies, &live).ok())
                    .flatten();
                let ks = (has_data && !feature.reference_sample.is_empty())
                    .then(|| ks_2samp(&sample.values, &feature.reference_sample).ok())
                    .flatten();
                FeatureWindow {
                    name: feature.name.clone(),
                    counts,
                    psi,
                    ks_statistic: ks.as_ref().map(|k| k.statistic),
                    ks_pvalue: ks.as_ref().map(|k| k.pvalue),
                }
            })
            .collect();
        TelemetryWindow {
            device_id: device_id.to_owned(),
            window_seq,
            model: self.model,
            version: self.version,
            started_at: self.started_at,
            ended_at,
            requests: self.requests,
            errors: self.errors,
            examples: self.examples,
            latency_buckets: self.latency_buckets,
            latency_samples: self.latencies.values,
            batch_sizes: self
                .batch_sizes
                .into_iter()
                .map(|(size, count)| [size, count])
                .collect(),
            class_counts: self.class_counts,
            features,
            labelled: self.labelled,
            correct: self.correct,
            shadow: self.shadow,
            captures: Vec::new(),
            late_labels: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::FeatureProfile;

    fn profile() -> DataProfile {
        DataProfile {
            features: vec![FeatureProfile {
                name: "x".into(),
                bin_edges: vec![0.0, 1.0],
                reference_frequencies: vec![0.25, 0.5, 0.25],
                reference_sample: vec![-1.0, 0.5, 0.5, 2.0],
            }],
            class_frequencies: vec![0.5, 0.5],
        }
    }

    #[test]
    fn a_window_counts_requests_classes_latency_and_drift() {
        let profile = profile();
        let mut window = WindowBuilder::new("m", 2, &profile, "t0".into());
        window.record_success(&profile, &[0.5, 3.0], &[1, 0], 0.002);
        window.record_error(0.0001);
        window.record_label(true);
        window.record_label(false);
        let closed = window.close(&profile, "d", 7, "t1".into());
        assert_eq!((closed.requests, closed.errors, closed.examples), (2, 1, 2));
        assert_eq!(closed.class_counts, vec![1, 1]);
        assert_eq!(closed.batch_sizes, vec![[2, 1]]);
        assert_eq!(closed.latency_buckets.iter().sum::<u64>(), 2);
        assert_eq!(closed.features[0].counts, vec![0, 1, 1]);
        assert!(closed.features[0].psi.expect("psi") > 0.0);
        assert!(closed.features[0].ks_pvalue.is_some());
        assert_eq!(closed.accuracy(), Some(0.5));
        let bytes = serde_json::to_vec(&closed).expect("json");
        assert_eq!(TelemetryWindow::from_bytes(&bytes).expect("parses"), closed);
    }
}
