//! Sums of telemetry windows, built one window at a time. Every aggregate the control
//! plane computes (summaries, chart buckets, fleet health, rollout gates) folds the
//! windows into a [`WindowSums`] as it reads them from the store, so it holds one
//! window in memory however many match: its memory does not grow with the fleet.

use std::collections::{BTreeMap, BTreeSet};

use edgewise_core::drift::psi;
use edgewise_core::profile::DataProfile;
use edgewise_core::telemetry::{LATENCY_BOUNDS_SECONDS, Reservoir, TelemetryWindow};

use crate::telemetry_store::{
    DRIFT_KS_PVALUE, DRIFT_KS_WINDOW_SHARE, DRIFT_PSI_THRESHOLD, FeatureDrift, TelemetrySummary,
};

/// Most request latencies kept for the latency gate's rank test: a uniform sample of
/// every window's own sample.
pub const MAX_LATENCY_SAMPLES: usize = 20_000;

/// KS statistics are counted in steps of 1/1000, so their median is exact to 0.001.
const KS_STEPS: f64 = 1_000.0;

/// One input feature's sums.
#[derive(Debug, Clone, Default)]
struct FeatureSums {
    /// Pooled counts per profile bin.
    counts: Vec<u64>,
    /// Windows with a KS test.
    ks_tests: u64,
    /// Of those, how many were below [`DRIFT_KS_PVALUE`].
    ks_drifted: u64,
    /// KS statistic in thousandths → windows.
    ks_statistics: BTreeMap<u16, u64>,
}

impl FeatureSums {
    /// The median KS statistic, to 0.001.
    fn median_ks_statistic(&self) -> Option<f64> {
        let mut rank = self.ks_tests / 2;
        for (&step, &count) in &self.ks_statistics {
            if rank < count {
                return Some(f64::from(step) / KS_STEPS);
            }
            rank -= count;
        }
        None
    }
}

/// Running sums over telemetry windows.
#[derive(Debug, Clone)]
pub struct WindowSums {
    windows: u64,
    devices: BTreeSet<String>,
    requests: u64,
    errors: u64,
    examples: u64,
    labelled: u64,
    correct: u64,
    shadow_compared: u64,
    shadow_agreed: u64,
    latency_buckets: Vec<u64>,
    latency_samples: Reservoir,
    class_counts: Vec<u64>,
    features: Vec<FeatureSums>,
}

impl Default for WindowSums {
    fn default() -> Self {
        WindowSums {
            windows: 0,
            devices: BTreeSet::new(),
            requests: 0,
            errors: 0,
            examples: 0,
            labelled: 0,
            correct: 0,
            shadow_compared: 0,
            shadow_agreed: 0,
            latency_buckets: vec![0; LATENCY_BOUNDS_SECONDS.len() + 1],
            latency_samples: Reservoir::new(MAX_LATENCY_SAMPLES, 0x5EED_1A7E),
            class_counts: Vec::new(),
            features: Vec::new(),
        }
    }
}

impl WindowSums {
    /// The sums of `windows`.
    pub fn of<'a>(windows: impl IntoIterator<Item = &'a TelemetryWindow>) -> Self {
        let mut sums = WindowSums::default();
        for window in windows {
            sums.add(window);
        }
        sums
    }

    /// Adds one window.
    pub fn add(&mut self, window: &TelemetryWindow) {
        self.windows += 1;
        if !self.devices.contains(&window.device_id) {
            self.devices.insert(window.device_id.clone());
        }
        self.requests += window.requests;
        self.errors += window.errors;
        self.examples += window.examples;
        self.labelled += window.labelled;
        self.correct += window.correct;
        if let Some(shadow) = &window.shadow {
            self.shadow_compared += shadow.compared;
            self.shadow_agreed += shadow.agreed;
        }
        add_counts(&mut self.latency_buckets, &window.latency_buckets);
        add_counts(&mut self.class_counts, &window.class_counts);
        for &latency in &window.latency_samples {
            self.latency_samples.push(latency);
        }
        if self.features.len() < window.features.len() {
            self.features
                .resize_with(window.features.len(), FeatureSums::default);
        }
        for (sums, feature) in self.features.iter_mut().zip(&window.features) {
            add_counts(&mut sums.counts, &feature.counts);
            if let (Some(statistic), Some(pvalue)) = (feature.ks_statistic, feature.ks_pvalue) {
                sums.ks_tests += 1;
                sums.ks_drifted += u64::from(pvalue < DRIFT_KS_PVALUE);
                let step = (statistic.clamp(0.0, 1.0) * KS_STEPS).round() as u16;
                *sums.ks_statistics.entry(step).or_default() += 1;
            }
        }
    }

    /// Windows added.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Examples predicted over the windows.
    pub fn examples(&self) -> u64 {
        self.examples
    }

    /// A uniform sample of the windows' request latencies, in seconds.
    pub fn latency_samples(&self) -> &[f64] {
        self.latency_samples.values()
    }

    /// The summary, without drift.
    pub fn summary(&self) -> TelemetrySummary {
        TelemetrySummary {
            windows: self.windows,
            devices: self.devices.len() as u64,
            requests: self.requests,
            errors: self.errors,
            error_rate: (self.requests > 0).then(|| self.errors as f64 / self.requests as f64),
            examples: self.examples,
            latency_p50: bucket_quantile(&self.latency_buckets, 0.5),
            latency_p99: bucket_quantile(&self.latency_buckets, 0.99),
            class_counts: self.class_counts.clone(),
            labelled: self.labelled,
            correct: self.correct,
            accuracy: (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64),
            shadow_compared: self.shadow_compared,
            shadow_agreed: self.shadow_agreed,
            features: Vec::new(),
            drifted_features: Vec::new(),
        }
    }

    /// The summary with per-feature drift against `profile` (the windows must all be
    /// of the version it belongs to).
    pub fn summary_with_drift(&self, profile: &DataProfile) -> TelemetrySummary {
        let features = self.drift(profile);
        TelemetrySummary {
            drifted_features: features
                .iter()
                .filter(|f| f.drifted)
                .map(|f| f.name.clone())
                .collect(),
            features,
            ..self.summary()
        }
    }

    /// Per-feature drift against `profile`: PSI of the pooled counts, and the share of
    /// windows whose KS test failed.
    pub fn drift(&self, profile: &DataProfile) -> Vec<FeatureDrift> {
        profile
            .features
            .iter()
            .enumerate()
            .map(|(index, reference)| {
                let sums = self.features.get(index);
                let psi = sums
                    .map(|s| &s.counts)
                    .filter(|counts| counts.iter().any(|&n| n > 0))
                    .and_then(|counts| {
                        let live: Vec<f64> = counts.iter().map(|&n| n as f64).collect();
                        psi(&reference.reference_frequencies, &live).ok()
                    });
                let tested = sums.filter(|s| s.ks_tests > 0);
                let ks_drifted_share = tested.map(|s| s.ks_drifted as f64 / s.ks_tests as f64);
                let drifted = psi.is_some_and(|p| p > DRIFT_PSI_THRESHOLD)
                    || ks_drifted_share.is_some_and(|share| share >= DRIFT_KS_WINDOW_SHARE);
                FeatureDrift {
                    name: reference.name.clone(),
                    psi,
                    ks_drifted_share,
                    ks_statistic: tested.and_then(FeatureSums::median_ks_statistic),
                    drifted,
                }
            })
            .collect()
    }
}

/// Adds `counts` into `totals` element by element, growing `totals` to fit.
fn add_counts(totals: &mut Vec<u64>, counts: &[u64]) {
    if totals.len() < counts.len() {
        totals.resize(counts.len(), 0);
    }
    for (total, count) in totals.iter_mut().zip(counts) {
        *total += count;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_core::telemetry::FeatureWindow;

    fn window(device: &str, requests: u64, statistic: f64) -> TelemetryWindow {
        TelemetryWindow {
            device_id: device.into(),
            window_seq: 1,
            model: "m".into(),
            version: 1,
            started_at: String::new(),
            ended_at: String::new(),
            requests,
            errors: 1,
            examples: requests,
            latency_buckets: vec![requests],
            latency_samples: vec![0.001; requests as usize],
            batch_sizes: Vec::new(),
            class_counts: vec![requests, 1],
            features: vec![FeatureWindow {
                name: "x".into(),
                counts: vec![requests, 0],
                psi: None,
                ks_statistic: Some(statistic),
                ks_pvalue: Some(if statistic > 0.5 { 1e-6 } else { 0.5 }),
            }],
            labelled: 0,
            correct: 0,
            shadow: None,
            captures: Vec::new(),
            late_labels: Vec::new(),
        }
    }

    #[test]
    fn sums_match_the_windows_one_by_one() {
        let windows = [
            window("a", 10, 0.1),
            window("a", 20, 0.2),
            window("b", 30, 0.9),
        ];
        let sums = WindowSums::of(&windows);
        let summary = sums.summary();
        assert_eq!(
            (summary.windows, summary.devices, summary.requests),
            (3, 2, 60)
        );
        assert_eq!(summary.errors, 3);
        assert_eq!(summary.class_counts, vec![60, 3]);
        assert_eq!(sums.latency_samples().len(), 60);
        let feature = &sums.features[0];
        assert_eq!(feature.counts, vec![60, 0]);
        assert_eq!((feature.ks_tests, feature.ks_drifted), (3, 1));
        assert_eq!(feature.median_ks_statistic(), Some(0.2));
    }

    #[test]
    fn the_latency_sample_is_bounded() {
        let mut sums = WindowSums::default();
        let busy = window("a", 512, 0.1);
        for _ in 0..100 {
            sums.add(&busy);
        }
        assert_eq!(sums.latency_samples().len(), MAX_LATENCY_SAMPLES);
        assert_eq!(sums.summary().requests, 51_200);
    }
}
