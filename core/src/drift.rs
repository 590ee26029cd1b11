//! Drift statistics: how far live inputs have moved from the training data.
//!
//! Each statistic matches a numpy or scipy reference to 1e-6 absolute, checked by
//! `tests/drift_vs_scipy.rs` against values from `tests/scipy/expected_drift.py`:
//!
//! - [`psi`], the population stability index, compares binned distributions (the
//!   reference frequencies of a [`FeatureProfile`](crate::profile::FeatureProfile)
//!   and a live histogram over the same bins). It is the usual alerting number:
//!   below 0.1 is commonly read as stable, above 0.25 as a significant shift. It is
//!   `sum((live - reference) * ln(live / reference))` over per-bin shares, with every
//!   share of exactly 0 first replaced by [`PSI_EPSILON`] (`1e-4`) so that empty bins
//!   give a large but finite contribution. There is no scipy function for it; the
//!   test computes the same formula in numpy.
//! - [`ks_2samp`], the two-sample Kolmogorov-Smirnov test, compares raw values (a
//!   profile's reference sample and a window of live values) without binning, and
//!   gives a p-value. It matches
//!   `scipy.stats.ks_2samp(a, b, alternative='two-sided', method='auto')`, ported
//!   from scipy 1.17: exact p-values when neither sample has more than 10,000
//!   values, else the asymptotic `scipy.stats.kstwo.sf`, which is available on its
//!   own as [`kstwo_sf`].
//! - [`jensen_shannon_distance`] compares binned distributions like PSI, but is
//!   symmetric and bounded to `[0, 1]`, which suits dashboards and class-frequency
//!   comparisons. It matches `scipy.spatial.distance.jensenshannon(p, q, base=2)`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Share substituted for an empty bin (a share of exactly 0) before PSI takes logarithms.
pub const PSI_EPSILON: f64 = 1e-4;

/// Largest sample size for which [`ks_2samp`] computes an exact p-value, as scipy's 'auto'.
pub const KS_MAX_EXACT_N: usize = 10_000;

/// Why a drift statistic could not be computed from its arguments.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DriftError {
    /// An argument had no values.
    #[error("`{arg}` is empty: expected at least one value")]
    Empty {
        /// Name of the argument.
        arg: &'static str,
    },
    /// Two distributions had different numbers of bins.
    #[error(
        "`{left}` has {left_len} bins and `{right}` has {right_len} bins: expected the same number"
    )]
    LengthMismatch {
        /// Name of the first argument.
        left: &'static str,
        /// Number of bins in the first argument.
        left_len: usize,
        /// Name of the second argument.
        right: &'static str,
        /// Number of bins in the second argument.
        right_len: usize,
    },
    /// A value was NaN or infinite.
    #[error("`{arg}[{index}]` is {value}: expected a finite number")]
    NonFinite {
        /// Name of the argument.
        arg: &'static str,
        /// Position of the offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A share or count was negative.
    #[error("`{arg}[{index}]` is {value}: expected a share or count of at least 0")]
    Negative {
        /// Name of the argument.
        arg: &'static str,
        /// Position of the offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A distribution had no mass at all.
    #[error("`{arg}` is all zeros: expected at least one positive share or count")]
    AllZero {
        /// Name of the argument.
        arg: &'static str,
    },
    /// A scalar argument was outside its domain.
    #[error("`{arg}` is {value}: expected {expected}")]
    OutOfDomain {
        /// Name of the argument.
        arg: &'static str,
        /// The offending value.
        value: f64,
        /// What the argument must be.
        expected: &'static str,
    },
}

/// Result of a two-sample Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    /// Largest absolute difference between the two empirical CDFs, in `[0, 1]`.
    pub statistic: f64,
    /// Two-sided p-value under the null hypothesis of one common distribution, in `[0, 1]`.
    pub pvalue: f64,
}

/// Population stability index of `live` against `reference`, both per-bin shares or counts.
///
/// Each argument is normalised to shares summing to 1; then every share of exactly 0
/// is replaced by [`PSI_EPSILON`] (`1e-4`, without renormalising), and the result is
/// `sum((live - reference) * ln(live / reference))`. A bin empty on both sides
/// contributes 0.
pub fn psi(reference: &[f64], live: &[f64]) -> Result<f64, DriftError> {
    let (reference, live) = paired_shares(("reference", reference), ("live", live))?;
    let floor = |share: f64| if share == 0.0 { PSI_EPSILON } else { share };
    Ok(reference
        .iter()
        .zip(&live)
        .map(|(&r, &l)| {
            let (r, l) = (floor(r), floor(l));
            (l - r) * (l / r).ln()
        })
        .sum())
}

/// Jensen-Shannon distance (base 2, in `[0, 1]`) between two per-bin share or count vectors.
///
/// As `scipy.spatial.distance.jensenshannon(p, q, base=2)`: both are normalised to
/// sum 1, `m = (p + q) / 2`, and the result is `sqrt((KL(p||m) + KL(q||m)) / (2 ln 2))`
/// where `0 * ln(0 / x)` counts as 0. A divergence that rounds below 0 gives 0.
pub fn jensen_shannon_distance(p: &[f64], q: &[f64]) -> Result<f64, DriftError> {
    let (p, q) = paired_shares(("p", p), ("q", q))?;
    let (mut left, mut right) = (0.0, 0.0);
    for (&pi, &qi) in p.iter().zip(&q) {
        let m = (pi + qi) / 2.0;
        left += rel_entr(pi, m);
        right += rel_entr(qi, m);
    }
    let divergence = (left + right) / std::f64::consts::LN_2;
    Ok((divergence / 2.0).max(0.0).sqrt())
}

/// Two-sample Kolmogorov-Smirnov test, as `scipy.stats.ks_2samp(a, b)` with its defaults.
///
/// The statistic is `max |F_a(x) - F_b(x)|` over the pooled values, with both
/// empirical CDFs right-continuous (ties count as `<=`). When neither sample has
/// more than [`KS_MAX_EXACT_N`] values the p-value is exact: scipy reports the
/// statistic rounded to the lattice `h / lcm(n_a, n_b)` and computes the
/// probability of a difference at least that large by lattice-path counting
/// (falling back to the asymptotic path should that fail numerically). Otherwise the
/// p-value is `kstwo_sf(round(n_a * n_b / (n_a + n_b)), statistic)`.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Result<KsResult, DriftError> {
    let a = sorted_sample("a", a)?;
    let b = sorted_sample("b", b)?;
    let d = ecdf_max_distance(&a, &b);
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    if n1.max(n2) > KS_MAX_EXACT_N as u64 {
        return Ok(ks_asymptotic(n1, n2, d));
    }
    let (d, exact) = ks_exact::two_sided(n1, n2, d);
    Ok(match exact {
        Some(pvalue) => KsResult {
            statistic: d,
            pvalue,
        },
        None => ks_asymptotic(n1, n2, d),
    })
}

/// Survival function `P(D_n >= d)` of the two-sided one-sample KS statistic, as `scipy.stats.kstwo.sf(d, n)`.
///
/// A port of scipy's `_kolmogn` (Simard and L'Ecuyer's choice among the
/// Ruben-Gambino, Durbin-Marsaglia-Tsang-Wang, Pomeranz, Pelz-Good and Smirnov
/// methods). `n` must be at least 1 and `d` must not be NaN.
pub fn kstwo_sf(n: u64, d: f64) -> Result<f64, DriftError> {
    if n == 0 {
        return Err(DriftError::OutOfDomain {
            arg: "n",
            value: 0.0,
            expected: "a sample size of at least 1",
        });
    }
    if d.is_nan() {
        return Err(DriftError::OutOfDomain {
            arg: "d",
            value: d,
            expected: "a number, not NaN",
        });
    }
    Ok(kolmogorov::kolmogn_sf(n, d))
}

/// The asymptotic branch of `ks_2samp`: `kstwo.sf(d, round(m * n / (m + n)))`, clipped.
fn ks_asymptotic(n1: u64, n2: u64, d: f64) -> KsResult {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even() as u64;
    let pvalue = kolmogorov::kolmogn_sf(en, d).clamp(0.0, 1.0);
    KsResult {
        statistic: d,
        pvalue,
    }
}

/// `x * ln(x / y)`, with `0` when `x == 0`, as `scipy.special.rel_entr` on non-negative inputs.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x * (x / y).ln() }
}

/// Validates two distributions of equal length and returns them as shares.
fn paired_shares(
    (left, left_values): (&'static str, &[f64]),
    (right, right_values): (&'static str, &[f64]),
) -> Result<(Vec<f64>, Vec<f64>), DriftError> {
    let left_shares = shares(left, left_values)?;
    let right_shares = shares(right, right_values)?;
    if left_shares.len() != right_shares.len() {
        return Err(DriftError::LengthMismatch {
            left,
            left_len: left_shares.len(),
            right,
            right_len: right_shares.len(),
        });
    }
    Ok((left_shares, right_shares))
}

/// Validates a vector of shares or counts and normalises it to sum 1.
fn shares(arg: &'static str, values: &[f64]) -> Result<Vec<f64>, DriftError> {
    if values.is_empty() {
        return Err(DriftError::Empty { arg });
    }
    for (index, &value) in values.iter().enumerate() {
        if !value.is_finite() {
            return Err(DriftError::NonFinite { arg, index, value });
        }
        if value < 0.0 {
            return Err(DriftError::Negative { arg, index, value });
        }
    }
    let total: f64 = values.iter().sum();
    if total <= 0.0 {
        return Err(DriftError::AllZero { arg });
    }
    Ok(values.iter().map(|v| v / total).collect())
}

/// Validates a sample (non-empty, all finite) and returns it sorted ascending.
fn sorted_sample(arg: &'static str, values: &[f64]) -> Result<Vec<f64>, DriftError> {
    if values.is_empty() {
        return Err(DriftError::Empty { arg });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(DriftError::NonFinite { arg, index, value });
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}

/// The KS statistic of two sorted samples, computed like scipy.
///
/// scipy evaluates `cdf_a - cdf_b` (each `count / n` with `searchsorted(side='right')`)
/// at every pooled value and takes the larger of the maximum and the negated
/// minimum; walking the distinct pooled values in order gives the same numbers.
fn ecdf_max_distance(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let (mut max_diff, mut min_diff) = (f64::NEG_INFINITY, f64::INFINITY);
    while i < a.len() || j < b.len() {
        let next = |sample: &[f64], k: usize| sample.get(k).copied().unwrap_or(f64::INFINITY);
        let value = next(a, i).min(next(b, j));
        while a.get(i).is_some_and(|&x| x <= value) {
            i += 1;
        }
        while b.get(j).is_some_and(|&y| y <= value) {
            j += 1;
        }
        let diff = i as f64 / n1 - j as f64 / n2;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    if min_s > max_diff { min_s } else { max_diff }
}

mod ks_exact;

mod kolmogorov;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_of_identical_distributions_is_zero() {
        assert_eq!(psi(&[1.0, 2.0, 0.0], &[2.0, 4.0, 0.0]).unwrap(), 0.0);
    }

    #[test]
    fn errors_name_the_argument() {
        let msg = |e: DriftError| e.to_string();
        assert!(msg(psi(&[], &[1.0]).unwrap_err()).contains("`reference` is empty"));
        assert!(
            msg(psi(&[1.0], &[1.0, 2.0]).unwrap_err())
                .contains("`reference` has 1 bins and `live` has 2 bins")
        );
        assert!(msg(psi(&[1.0, -1.0], &[1.0, 2.0]).unwrap_err()).contains("`reference[1]`"));
        assert!(
            msg(jensen_shannon_distance(&[0.0, 0.0], &[1.0, 1.0]).unwrap_err())
                .contains("`p` is all zeros")
        );
        assert!(
            msg(jensen_shannon_distance(&[1.0], &[f64::NAN]).unwrap_err())
                .contains("`q[0]` is NaN: expected a finite number")
        );
        assert!(msg(ks_2samp(&[1.0], &[]).unwrap_err()).contains("`b` is empty"));
        assert!(msg(ks_2samp(&[1.0, f64::INFINITY], &[1.0]).unwrap_err()).contains("`a[1]`"));
        assert!(msg(kstwo_sf(0, 0.5).unwrap_err()).contains("`n` is 0"));
        assert!(msg(kstwo_sf(3, f64::NAN).unwrap_err()).contains("`d` is NaN"));
    }

    #[test]
    fn ks_of_identical_samples_has_p_one() {
        let r = ks_2samp(&[3.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            r,
            KsResult {
                statistic: 0.0,
                pvalue: 1.0
            }
        );
    }

    #[test]
    fn kstwo_sf_is_one_below_support_and_zero_at_one() {
        assert_eq!(kstwo_sf(10, 0.01).unwrap(), 1.0);
        assert_eq!(kstwo_sf(10, 1.0).unwrap(), 0.0);
    }
}
