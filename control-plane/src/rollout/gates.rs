//! Rollout gates: each judges the stage's devices (the canary) against the devices
//! still on the old version (the baseline), with tests suited to small samples. Too
//! little data means wait, never pass.

use std::collections::BTreeMap;

use edgewise_core::drift::jensen_shannon_distance;
use edgewise_core::profile::DataProfile;
use edgewise_core::stats::{mann_whitney_greater, two_proportion_greater};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::telemetry_fold::WindowSums;

/// Thresholds of every gate; a `--gates` file may set any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Least share of the stage's devices that must apply the update.
    pub min_update_success: f64,
    /// Seconds a device has to apply its assignment before it counts as failed.
    pub update_timeout_seconds: u64,
    /// Least requests on each side before error rates are compared.
    pub min_requests: u64,
    /// Largest tolerated rise in error rate (absolute), when significant.
    pub max_error_rate_increase: f64,
    /// Least latency samples on each side before latency is compared.
    pub min_latency_samples: usize,
    /// Largest tolerated ratio of canary to baseline median latency, when significant.
    pub max_latency_ratio: f64,
    /// Largest tolerated PSI of any input feature on the canary.
    pub max_psi: f64,
    /// Least examples seen by the canary before drift is judged (PSI is noisy below).
    pub min_drift_examples: u64,
    /// Least predictions on each side before output distributions are compared.
    pub min_predictions: u64,
    /// Largest tolerated Jensen-Shannon distance between canary and baseline outputs.
    pub max_js_distance: f64,
    /// Least labelled predictions on each side before accuracy is compared.
    pub min_labels: u64,
    /// Largest tolerated accuracy drop (absolute), when significant.
    pub max_accuracy_drop: f64,
    /// Least shadow comparisons before agreement is judged.
    pub min_shadow_compared: u64,
    /// Least agreement of a shadow candidate with the active model.
    pub min_shadow_agreement: f64,
    /// Significance level of the one-sided tests.
    pub alpha: f64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_update_success: 1.0,
            update_timeout_seconds: 120,
            min_requests: 100,
            max_error_rate_increase: 0.01,
            min_latency_samples: 30,
            max_latency_ratio: 3.0,
            max_psi: 0.25,
            min_drift_examples: 500,
            min_predictions: 100,
            max_js_distance: 0.2,
            min_labels: 50,
            max_accuracy_drop: 0.05,
            min_shadow_compared: 100,
            min_shadow_agreement: 0.9,
            alpha: 0.01,
        }
    }
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The gate holds.
    Pass,
    /// The gate failed: halt.
    Fail,
    /// Not enough data yet.
    Wait,
}

/// One gate's verdict with the numbers behind it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GateResult {
    /// Gate name.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The numbers it was judged on.
    pub numbers: BTreeMap<String, f64>,
    /// In words.
    pub detail: String,
}

/// How the stage's devices took their update.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateOutcome {
    /// Devices in the stage.
    pub cohort: usize,
    /// Applied.
    pub applied: usize,
    /// Failed or timed out.
    pub failed: usize,
}

/// What a stage is judged on.
pub struct Evidence<'a> {
    /// Update outcomes.
    pub updates: UpdateOutcome,
    /// Sums of the stage's devices' windows on the candidate.
    pub canary: WindowSums,
    /// Sums of the group's devices' windows on the old version.
    pub baseline: WindowSums,
    /// The candidate's reference profile.
    pub profile: &'a DataProfile,
    /// Whether the stage runs the candidate in shadow.
    pub shadow: bool,
}

fn result(name: &str, verdict: Verdict, numbers: &[(&str, f64)], detail: String) -> GateResult {
    GateResult {
        name: name.to_owned(),
        verdict,
        numbers: numbers.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        detail,
    }
}

/// Judges every gate.
pub fn judge(config: &GateConfig, evidence: &Evidence<'_>) -> Vec<GateResult> {
    let canary = evidence.canary.summary();
    let baseline = evidence.baseline.summary();
    let mut results = vec![update_gate(config, evidence.updates)];
    if evidence.shadow {
        results.push(shadow_gate(
            config,
            canary.shadow_compared,
            canary.shadow_agreed,
        ));
        return results;
    }
    results.push(error_gate(
        config,
        (canary.errors, canary.requests),
        (baseline.errors, baseline.requests),
    ));
    results.push(latency_gate(
        config,
        evidence.canary.latency_samples(),
        evidence.baseline.latency_samples(),
    ));
    results.push(drift_gate(config, evidence));
    results.push(agreement_gate(
        config,
        &canary.class_counts,
        &baseline.class_counts,
    ));
    results.push(accuracy_gate(
        config,
        (canary.correct, canary.labelled),
        (baseline.correct, baseline.labelled),
    ));
    results
}

/// The stage's verdict: any failure fails, else any wait waits.
pub fn overall(results: &[GateResult]) -> Verdict {
    if results.iter().any(|r| r.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if results.iter().any(|r| r.verdict == Verdict::Wait) {
        Verdict::Wait
    } else {
        Verdict::Pass
    }
}

fn update_gate(config: &GateConfig, updates: UpdateOutcome) -> GateResult {
    let numbers = [
        ("cohort", updates.cohort as f64),
        ("applied", updates.applied as f64),
        ("failed", updates.failed as f64),
    ];
    if updates.applied + updates.failed < updates.cohort {
        return result(
            "update_success",
            Verdict::Wait,
            &numbers,
            "devices still updating".into(),
        );
    }
    let rate = if updates.cohort == 0 {
        1.0
    } else {
        updates.applied as f64 / updates.cohort as f64
    };
    let verdict = if rate >= config.min_update_success {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let mut numbers = numbers.to_vec();
    numbers.push(("success_rate", rate));
    result(
        "update_success",
        verdict,
        &numbers,
        format!(
            "{:.0}% applied (need {:.0}%)",
            rate * 100.0,
            config.min_update_success * 100.0
        ),
    )
}

fn error_gate(
    config: &GateConfig,
    (errors, requests): (u64, u64),
    (base_errors, base_requests): (u64, u64),
) -> GateResult {
    let mut numbers = vec![
        ("canary_requests", requests as f64),
        ("canary_errors", errors as f64),
        ("baseline_requests", base_requests as f64),
        ("baseline_errors", base_errors as f64),
    ];
    if requests < config.min_requests || base_requests < config.min_requests {
        return result(
            "error_rate",
            Verdict::Wait,
            &numbers,
            format!("need {} requests on each side", config.min_requests),
        );
    }
    let (rate, base_rate) = (
        errors as f64 / requests as f64,
        base_errors as f64 / base_requests as f64,
    );
    numbers.push(("canary_error_rate", rate));
    numbers.push(("baseline_error_rate", base_rate));
    let pvalue = two_proportion_greater(errors, requests, base_errors, base_requests)
        .map_or(1.0, |t| t.pvalue);
    numbers.push(("p_value", pvalue));
    let worse = pvalue < config.alpha && rate - base_rate > config.max_error_rate_increase;
    let verdict = if worse { Verdict::Fail } else { Verdict::Pass };
    result(
        "error_rate",
        verdict,
        &numbers,
        format!(
            "canary {:.2}% vs baseline {:.2}% (p={pvalue:.3})",
            rate * 100.0,
            base_rate * 100.0
        ),
    )
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn latency_gate(config: &GateConfig, canary: &[f64], baseline: &[f64]) -> GateResult {
    let mut numbers = vec![
        ("canary_samples", canary.len() as f64),
        ("baseline_samples", baseline.len() as f64),
    ];
    if canary.len() < config.min_latency_samples || baseline.len() < config.min_latency_samples {
        return result(
            "latency",
            Verdict::Wait,
            &numbers,
            format!(
                "need {} latency samples on each side",
                config.min_latency_samples
            ),
        );
    }
    let (canary_median, baseline_median) = (median(canary), median(baseline));
    let ratio = canary_median / baseline_median.max(1e-9);
    let pvalue = mann_whitney_greater(canary, baseline).map_or(1.0, |t| t.pvalue);
    numbers.extend([
        ("canary_median_seconds", canary_median),
        ("baseline_median_seconds", baseline_median),
        ("ratio", ratio),
        ("p_value", pvalue),
    ]);
    let slower = pvalue < config.alpha && ratio > config.max_latency_ratio;
    let verdict = if slower { Verdict::Fail } else { Verdict::Pass };
    result(
        "latency",
        verdict,
        &numbers,
        format!(
            "median {:.2} ms vs {:.2} ms, ratio {ratio:.2} (Mann-Whitney p={pvalue:.3})",
            canary_median * 1e3,
            baseline_median * 1e3
        ),
    )
}

fn drift_gate(config: &GateConfig, evidence: &Evidence<'_>) -> GateResult {
    let examples = evidence.canary.examples();
    if examples < config.min_drift_examples {
        return result(
            "drift",
            Verdict::Wait,
            &[("canary_examples", examples as f64)],
            format!("need {} examples on the canary", config.min_drift_examples),
        );
    }
    let drift = evidence.canary.drift(evidence.profile);
    let worst = drift
        .iter()
        .filter_map(|f| f.psi.map(|psi| (psi, f)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((max_psi, _)) = worst else {
        return result("drift", Verdict::Wait, &[], "no inputs seen yet".into());
    };
    // The gate's own PSI limit, or KS failing in most windows; the store's looser
    // 0.2 PSI flag would overrule `max_psi` and trips on a few hundred examples.
    let flagged: Vec<&str> = drift
        .iter()
        .filter(|f| {
            f.psi.is_some_and(|p| p > config.max_psi)
                || f.ks_drifted_share
                    .is_some_and(|share| share >= crate::telemetry_store::DRIFT_KS_WINDOW_SHARE)
        })
        .map(|f| f.name.as_str())
        .collect();
    let numbers = [
        ("max_psi", max_psi),
        ("drifted_features", flagged.len() as f64),
    ];
    let verdict = if flagged.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let detail = if flagged.is_empty() {
        format!("max PSI {max_psi:.3}")
    } else {
        format!("drifted: {}", flagged.join(", "))
    };
    result("drift", verdict, &numbers, detail)
}

fn agreement_gate(config: &GateConfig, canary: &[u64], baseline: &[u64]) -> GateResult {
    let (n, m) = (canary.iter().sum::<u64>(), baseline.iter().sum::<u64>());
    let mut numbers = vec![
        ("canary_predictions", n as f64),
        ("baseline_predictions", m as f64),
    ];
    if n < config.min_predictions || m < config.min_predictions || canary.len() != baseline.len() {
        return result(
            "output_distribution",
            Verdict::Wait,
            &numbers,
            format!("need {} predictions on each side", config.min_predictions),
        );
    }
    let as_f64 = |c: &[u64]| c.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let distance = jensen_shannon_distance(&as_f64(canary), &as_f64(baseline)).unwrap_or(1.0);
    numbers.push(("js_distance", distance));
    let verdict = if distance > config.max_js_distance {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    result(
        "output_distribution",
        verdict,
        &numbers,
        format!(
            "JS distance {distance:.3} (limit {:.3})",
            config.max_js_distance
        ),
    )
}

fn accuracy_gate(
    config: &GateConfig,
    (correct, labelled): (u64, u64),
    (base_correct, base_labelled): (u64, u64),
) -> GateResult {
    let mut numbers = vec![
        ("canary_labelled", labelled as f64),
        ("baseline_labelled", base_labelled as f64),
    ];
    if labelled == 0 && base_labelled == 0 {
        return result(
            "accuracy",
            Verdict::Pass,
            &numbers,
            "no labels reported".into(),
        );
    }
    if labelled < config.min_labels || base_labelled < config.min_labels {
        return result(
            "accuracy",
            Verdict::Wait,
            &numbers,
            format!("need {} labels on each side", config.min_labels),
        );
    }
    let (accuracy, base_accuracy) = (
        correct as f64 / labelled as f64,
        base_correct as f64 / base_labelled as f64,
    );
    let pvalue = two_proportion_greater(base_correct, base_labelled, correct, labelled)
        .map_or(1.0, |t| t.pvalue);
    numbers.extend([
        ("canary_accuracy", accuracy),
        ("baseline_accuracy", base_accuracy),
        ("p_value", pvalue),
    ]);
    let worse = pvalue < config.alpha && base_accuracy - accuracy > config.max_accuracy_drop;
    let verdict = if worse { Verdict::Fail } else { Verdict::Pass };
    result(
        "accuracy",
        verdict,
        &numbers,
        format!(
            "canary {:.1}% vs baseline {:.1}% (p={pvalue:.3})",
            accuracy * 100.0,
            base_accuracy * 100.0
        ),
    )
}

fn shadow_gate(config: &GateConfig, compared: u64, agreed: u64) -> GateResult {
    let mut numbers = vec![("compared", compared as f64), ("agreed", agreed as f64)];
    if compared < config.min_shadow_compared {
        return result(
            "shadow_agreement",
            Verdict::Wait,
            &numbers,
            format!("need {} shadow comparisons", config.min_shadow_compared),
        );
    }
    let rate = agreed as f64 / compared as f64;
    numbers.push(("agreement", rate));
    let verdict = if rate >= config.min_shadow_agreement {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    result(
        "shadow_agreement",
        verdict,
        &numbers,
        format!(
            "{:.1}% agreement (need {:.1}%)",
            rate * 100.0,
            config.min_shadow_agreement * 100.0
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_samples_wait_and_clear_differences_fail() {
        let config = GateConfig::default();
        assert_eq!(error_gate(&config, (1, 10), (0, 10)).verdict, Verdict::Wait);
        assert_eq!(
            error_gate(&config, (40, 200), (2, 200)).verdict,
            Verdict::Fail
        );
        assert_eq!(
            error_gate(&config, (2, 200), (2, 200)).verdict,
            Verdict::Pass
        );
        let fast: Vec<f64> = (0..50).map(|i| 0.001 + i as f64 * 1e-6).collect();
        let slow: Vec<f64> = fast.iter().map(|v| v * 4.0).collect();
        assert_eq!(latency_gate(&config, &slow, &fast).verdict, Verdict::Fail);
        assert_eq!(latency_gate(&config, &fast, &fast).verdict, Verdict::Pass);
        assert_eq!(
            latency_gate(&config, &fast[..5], &fast).verdict,
            Verdict::Wait
        );
        assert_eq!(
            agreement_gate(&config, &[100, 100], &[100, 100]).verdict,
            Verdict::Pass
        );
        assert_eq!(
            agreement_gate(&config, &[190, 10], &[10, 190]).verdict,
            Verdict::Fail
        );
        assert_eq!(
            accuracy_gate(&config, (30, 100), (95, 100)).verdict,
            Verdict::Fail
        );
        assert_eq!(
            accuracy_gate(&config, (94, 100), (95, 100)).verdict,
            Verdict::Pass
        );
        assert_eq!(
            update_gate(
                &config,
                UpdateOutcome {
                    cohort: 2,
                    applied: 1,
                    failed: 0
                }
            )
            .verdict,
            Verdict::Wait
        );
        assert_eq!(
            update_gate(
                &config,
                UpdateOutcome {
                    cohort: 2,
                    applied: 1,
                    failed: 1
                }
            )
            .verdict,
            Verdict::Fail
        );
    }
}
