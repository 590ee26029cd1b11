//! Aggregations of stored telemetry over time: the bucketed series the dashboards
//! chart, and the recent health of each model version that metrics and alerts read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{Error, Result};
use crate::telemetry_fold::WindowSums;
use crate::telemetry_store::{TelemetryQuery, TelemetryStore, TelemetrySummary};

/// Most buckets one series request may ask for.
const MAX_POINTS: u64 = 2_000;

/// Which windows to chart, and how finely.
#[derive(Debug, Clone, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Model name.
    pub model: String,
    /// Only this version (needed for per-feature drift).
    pub version: Option<u64>,
    /// Only devices of this group.
    pub group: Option<String>,
    /// How far back, in seconds (default one hour).
    pub since_seconds: Option<u64>,
    /// Bucket width in seconds (default 60).
    pub step_seconds: Option<u64>,
}

/// One feature's drift within a bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeaturePoint {
    /// Feature name.
    pub name: String,
    /// PSI of the bucket's pooled inputs against the reference profile.
    pub psi: Option<f64>,
    /// Whether the feature is flagged as drifted in this bucket.
    pub drifted: bool,
}

/// The sums of one time bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeriesPoint {
    /// The bucket's start, Unix seconds.
    pub at: u64,
    /// Windows in the bucket.
    pub windows: u64,
    /// Requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: Option<f64>,
    /// Median latency, seconds.
    pub latency_p50: Option<f64>,
    /// 99th-percentile latency, seconds.
    pub latency_p99: Option<f64>,
    /// Accuracy over labelled predictions.
    pub accuracy: Option<f64>,
    /// Per-feature drift (when the query names one version).
    pub features: Vec<FeaturePoint>,
}

/// A bucketed series.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Series {
    /// Bucket width in seconds.
    pub step_seconds: u64,
    /// Buckets with data, oldest first.
    pub points: Vec<SeriesPoint>,
}

/// The recent telemetry of one model version, over all groups or one.
#[derive(Debug, Clone)]
pub struct VersionHealth {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// The group, or `None` for the whole fleet.
    pub group: Option<String>,
    /// The sums, with per-feature drift against the version's profile.
    pub summary: TelemetrySummary,
}

impl TelemetryStore {
    /// The windows of `query` bucketed by arrival time.
    pub fn series(&self, query: &SeriesQuery) -> Result<Series> {
        let step = query.step_seconds.unwrap_or(60);
        let since = query.since_seconds.unwrap_or(3_600);
        if step == 0 || since / step > MAX_POINTS {
            return Err(Error::Invalid(format!(
                "field `step_seconds`: expected at least 1 and at most {MAX_POINTS} buckets over \
                 `since_seconds`, got step {step} over {since}"
            )));
        }
        let profile = match query.version {
            Some(version) => self.profile(&query.model, version)?,
            None => None,
        };
        let mut buckets: BTreeMap<u64, WindowSums> = BTreeMap::new();
        self.for_each_window(
            &TelemetryQuery {
                model: Some(query.model.clone()),
                version: query.version,
                group: query.group.clone(),
                since_seconds: Some(since),
                device: None,
            },
            |stored| {
                buckets
                    .entry(stored.received_at / step * step)
                    .or_default()
                    .add(&stored.window);
            },
        )?;
        let points = buckets
            .into_iter()
            .map(|(at, sums)| {
                let summary = sums.summary();
                let features = profile.as_ref().map_or_else(Vec::new, |profile| {
                    sums.drift(profile)
                        .into_iter()
                        .map(|drift| FeaturePoint {
                            name: drift.name,
                            psi: drift.psi,
                            drifted: drift.drifted,
                        })
                        .collect()
                });
                SeriesPoint {
                    at,
                    windows: summary.windows,
                    requests: summary.requests,
                    errors: summary.errors,
                    error_rate: summary.error_rate,
                    latency_p50: summary.latency_p50,
                    latency_p99: summary.latency_p99,
                    accuracy: summary.accuracy,
                    features,
                }
            })
            .collect();
        Ok(Series {
            step_seconds: step,
            points,
        })
    }

    /// Each model version's telemetry of the last `seconds`: once over the fleet and
    /// once per group, with drift against the version's profile.
    pub fn recent_health(&self, seconds: u64) -> Result<Vec<VersionHealth>> {
        let mut by_scope: BTreeMap<(String, u64, Option<String>), WindowSums> = BTreeMap::new();
        self.for_each_window(
            &TelemetryQuery {
                since_seconds: Some(seconds),
                ..TelemetryQuery::default()
            },
            |stored| {
                let (model, version) = (stored.window.model.clone(), stored.window.version);
                by_scope
                    .entry((model.clone(), version, None))
                    .or_default()
                    .add(&stored.window);
                by_scope
                    .entry((model, version, Some(stored.group)))
                    .or_default()
                    .add(&stored.window);
            },
        )?;
        let mut health = Vec::with_capacity(by_scope.len());
        for ((model, version, group), sums) in by_scope {
            let summary = match self.profile(&model, version)? {
                Some(profile) => sums.summary_with_drift(&profile),
                None => sums.summary(),
            };
            health.push(VersionHealth {
                model,
                version,
                group,
                summary,
            });
        }
        Ok(health)
    }
}
