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

/// Exact two-sided p-values of the two-sample KS statistic (scipy's `_attempt_exact_2kssamp`).
mod ks_exact {
    /// Rounds `d` to the lattice `h / lcm` and returns it with the exact p-value, if that succeeded.
    ///
    /// `None` means scipy's floating-point trouble check failed (a probability outside
    /// `[0, 1]`), and the caller must fall back to the asymptotic distribution.
    pub(super) fn two_sided(n1: u64, n2: u64, d: f64) -> (f64, Option<f64>) {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        let d = h as f64 / lcm as f64;
        if h == 0 {
            return (d, Some(1.0));
        }
        let prob = if n1 == n2 {
            prob_outside_square(n1, h)
        } else {
            outer_prob_inside_method(n1, n2, g, h)
        };
        let valid = (0.0..=1.0).contains(&prob);
        (d, valid.then_some(prob))
    }

    /// Greatest common divisor.
    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    /// `P(D_{n,n} >= h / n)`: scipy's `_compute_prob_outside_square`.
    ///
    /// `2 * sum_k (-1)^(k+1) binom(2n, n - k h) / binom(2n, n)`, evaluated with a
    /// Horner-like scheme to avoid subtractive cancellation.
    fn prob_outside_square(n: u64, h: u64) -> f64 {
        let (n, h) = (n as i64, h as i64);
        let mut p = 0.0;
        let mut k = (n as f64 / h as f64).floor() as i64;
        while k >= 0 {
            let mut p1 = 1.0;
            for j in 0..h {
                p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
            }
            p = p1 * (1.0 - p);
            k -= 1;
        }
        2.0 * p
    }

    /// Share of lattice paths from (0, 0) to (m, n) leaving `|x/m - y/n| < h/lcm`: scipy's `_compute_outer_prob_inside_method`.
    ///
    /// Hodges' inside method with Viehmann's recursion for `1 - p`, keeping one
    /// sliding column of the path-count matrix.
    fn outer_prob_inside_method(m: u64, n: u64, g: u64, h: u64) -> f64 {
        let (m, n) = if m < n { (n, m) } else { (m, n) };
        let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
        let (mg, ng) = (m / g, n / g);
        let mut minj: i64 = 0;
        let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
        let mut curlen = maxj - minj;
        let len_a = (2 * maxj + 2).min(n + 1) as usize;
        let mut a = vec![1.0_f64; len_a];
        a[minj as usize..maxj as usize].fill(0.0);
        for i in 1..=m {
            let (lastminj, lastlen) = (minj, curlen);
            minj = ((((ng * i - h) as f64 / mg as f64).floor() as i64) + 1).max(0);
            minj = minj.min(n);
            maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
            if maxj <= minj {
                return 1.0;
            }
            let mut val = if minj == 0 { 0.0 } else { 1.0 };
            for jj in 0..(maxj - minj) {
                let j = jj + minj;
                let carried = a[(jj + minj - lastminj) as usize];
                val = (carried * i as f64 + val * j as f64) / (i + j) as f64;
                a[jj as usize] = val;
            }
            curlen = maxj - minj;
            if lastlen > curlen {
                let start = (maxj - minj) as usize;
                a[start..start + (lastlen - curlen) as usize].fill(1.0);
            }
        }
        a[(maxj - minj - 1) as usize]
    }
}

/// The two-sided one-sample KS distribution, ported from scipy's `stats/_ksstats.py`
/// and, for the one-sided Smirnov tail, `xsf/cephes/kolmogorov.h`.
mod kolmogorov {
    /// `2^128`, the rescaling step used to keep intermediate results in range.
    const EP128: f64 = f64::from_bits((1023 + 128) << 52);
    /// `2^-128`.
    const EM128: f64 = 1.0 / EP128;
    /// `log2` of the rescaling step.
    const E128: i32 = 128;
    /// `ln` of the smallest normal double, as cephes' `MINLOG`.
    const MINLOG: f64 = -7.083_964_185_322_641e2;
    /// Sample sizes above this use Smirnov's closed-form approximation, as cephes.
    const SMIRNOV_MAX_COMPUTE_N: u64 = 1_000_000;
    /// Stirling series coefficients `B_2j / (2j (2j - 1))` for j = 8 down to 1.
    const STIRLING_COEFFS: [f64; 8] = [
        -0.029_550_653_594_771_242,
        0.006_410_256_410_256_41,
        -0.001_917_526_917_526_917_6,
        0.000_841_750_841_750_841_7,
        -0.000_595_238_095_238_095_3,
        0.000_793_650_793_650_793_7,
        -0.002_777_777_777_777_778,
        0.083_333_333_333_333_33,
    ];

    /// `P(D_n >= x)`: scipy's `_kolmogn(n, x, cdf=False)`, for `n >= 1` and `x` not NaN.
    pub(super) fn kolmogn_sf(n: u64, x: f64) -> f64 {
        if x >= 1.0 {
            return 0.0;
        }
        if x <= 0.0 {
            return 1.0;
        }
        let nf = n as f64;
        let t = nf * x;
        if t <= 1.0 {
            return ruben_gambino_low_sf(n, t);
        }
        if t >= nf - 1.0 {
            return clip(2.0 * (1.0 - x).powf(nf));
        }
        if x >= 0.5 {
            return clip(2.0 * smirnov_sf(n, x));
        }
        let nx_squared = t * x;
        if n <= 140 {
            return small_n_sf(n, x, nx_squared);
        }
        if nx_squared >= 370.0 {
            return 0.0;
        }
        if nx_squared >= 2.2 {
            return clip(2.0 * smirnov_sf(n, x));
        }
        let cdf = if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
            dmtw_cdf(n, x)
        } else {
            pelz_good_cdf(n, x)
        };
        clip(1.0 - cdf)
    }

    /// The `n <= 140` branches of `_kolmogn`'s survival function, for `1/n < x < 1/2`.
    fn small_n_sf(n: u64, x: f64, nx_squared: f64) -> f64 {
        if nx_squared <= 0.754_693 {
            return clip(1.0 - dmtw_cdf(n, x));
        }
        if nx_squared <= 4.0 {
            return clip(1.0 - pomeranz_cdf(n, x));
        }
        clip(2.0 * smirnov_sf(n, x))
    }

    /// Ruben-Gambino for `t = n x <= 1`: the CDF is `n!/n^n (2t - 1)^n` above `t = 1/2`.
    fn ruben_gambino_low_sf(n: u64, t: f64) -> f64 {
        if t <= 0.5 {
            return 1.0;
        }
        let nf = n as f64;
        let cdf = if n <= 140 {
            (1..=n)
                .map(|i| i as f64 * (1.0 / nf) * (2.0 * t - 1.0))
                .product()
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        clip(1.0 - cdf)
    }

    /// `ln(n! / n^n)` by Stirling's series with `n ln n` removed up front.
    fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
        let rn = 1.0 / n;
        let series = STIRLING_COEFFS
            .iter()
            .fold(0.0, |acc, &c| acc * (rn / n) + c);
        n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * series
    }

    /// Clips a probability to `[0, 1]`.
    fn clip(p: f64) -> f64 {
        p.clamp(0.0, 1.0)
    }

    /// `x * 2^exp`, without the intermediate power over- or underflowing.
    fn ldexp(mut x: f64, mut exp: i32) -> f64 {
        while exp > 1000 {
            x *= 2f64.powi(1000);
            exp -= 1000;
        }
        while exp < -1000 {
            x *= 2f64.powi(-1000);
            exp += 1000;
        }
        x * 2f64.powi(exp)
    }

    /// A dense square matrix, row-major.
    struct Matrix {
        size: usize,
        cells: Vec<f64>,
    }

    impl Matrix {
        /// The `size` x `size` zero matrix.
        fn zeros(size: usize) -> Self {
            Self {
                size,
                cells: vec![0.0; size * size],
            }
        }

        /// The `size` x `size` identity matrix.
        fn identity(size: usize) -> Self {
            let mut m = Self::zeros(size);
            for i in 0..size {
                m.set(i, i, 1.0);
            }
            m
        }

        /// Entry at row `r`, column `c`.
        fn get(&self, r: usize, c: usize) -> f64 {
            self.cells[r * self.size + c]
        }

        /// Sets the entry at row `r`, column `c`.
        fn set(&mut self, r: usize, c: usize, value: f64) {
            self.cells[r * self.size + c] = value;
        }

        /// Matrix product `self * other`.
        fn mul(&self, other: &Matrix) -> Matrix {
            let size = self.size;
            let mut out = Matrix::zeros(size);
            for r in 0..size {
                for k in 0..size {
                    let a = self.get(r, k);
                    for c in 0..size {
                        out.cells[r * size + c] += a * other.get(k, c);
                    }
                }
            }
            out
        }

        /// Divides every entry by `divisor`.
        fn scale_down(&mut self, divisor: f64) {
            self.cells.iter_mut().for_each(|v| *v /= divisor);
        }
    }

    /// `P(D_n <= d)` by Durbin's matrix algorithm as Marsaglia, Tsang and Wang compute it: scipy's `_kolmogn_DMTW`.
    fn dmtw_cdf(n: u64, d: f64) -> f64 {
        let nd = n as f64 * d;
        if nd <= 0.5 {
            return 0.0;
        }
        let k = nd.ceil() as usize;
        let h = k as f64 - nd;
        let m = 2 * k - 1;
        let (hpwr, mut expnt) = matrix_power_scaled(dmtw_matrix(m, h), n, k);
        let mut p = hpwr.get(k - 1, k - 1);
        let nf = n as f64;
        for i in 1..=n {
            p = i as f64 * p / nf;
            if p.abs() < EM128 {
                p *= EP128;
                expnt -= E128;
            }
        }
        if expnt != 0 {
            p = ldexp(p, expnt);
        }
        clip(p)
    }

    /// The `m` x `m` matrix H of Durbin's algorithm for fractional offset `h`.
    fn dmtw_matrix(m: usize, h: f64) -> Matrix {
        let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powf(j as f64)).collect();
        let mut w = vec![0.0; m];
        let mut fac = 1.0;
        for j in 1..=m {
            w[j - 1] = fac;
            fac /= j as f64;
            v[j - 1] *= fac;
        }
        let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
        v[m - 1] = (1.0 + tt) * fac;
        let mut matrix = Matrix::zeros(m);
        for i in 1..m {
            for r in (i - 1)..m {
                matrix.set(r, i, w[r - (i - 1)]);
            }
        }
        for (r, &value) in v.iter().enumerate() {
            matrix.set(r, 0, value);
        }
        for (c, &value) in v.iter().rev().enumerate() {
            matrix.set(m - 1, c, value);
        }
        matrix
    }

    /// `H^n` by repeated squaring, rescaling by `2^-128` whenever entry `(k-1, k-1)` of the square grows past `2^128`; returns the power and its binary exponent.
    fn matrix_power_scaled(mut h: Matrix, n: u64, k: usize) -> (Matrix, i32) {
        let mut hpwr = Matrix::identity(h.size);
        let (mut nn, mut expnt, mut hexpnt) = (n, 0i32, 0i32);
        while nn > 0 {
            if nn % 2 == 1 {
                hpwr = hpwr.mul(&h);
                expnt += hexpnt;
            }
            h = h.mul(&h);
            hexpnt *= 2;
            if h.get(k - 1, k - 1).abs() > EP128 {
                h.scale_down(EP128);
                hexpnt += E128;
            }
            nn /= 2;
        }
        (hpwr, expnt)
    }

    /// Where a Pomeranz row is non-zero.
    struct PomeranzGrid {
        /// Sample size.
        n: i64,
        /// `floor(n x)`.
        ll: i64,
        /// 1 when `n x` has a fractional part, else 0.
        ceilf: i64,
        /// 1 when the fractional part of `n x` exceeds 1/2, else 0.
        roundf: i64,
    }

    impl PomeranzGrid {
        /// First and last non-zero column of row `i`: scipy's `_pomeranz_compute_j1j2`.
        fn j1j2(&self, i: i64) -> (i64, i64) {
            let Self {
                n,
                ll,
                ceilf,
                roundf,
            } = *self;
            let (j1, j2) = if i == 0 {
                (-ll - ceilf - 1, ll + ceilf - 1)
            } else {
                let (ip1div2, ip1mod2) = ((i + 1) / 2, (i + 1) % 2);
                if ip1mod2 == 0 {
                    if ip1div2 == n + 1 {
                        (n - ll - ceilf - 1, n + ll + ceilf - 1)
                    } else {
                        (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
                    }
                } else {
                    (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
                }
            };
            ((j1 + 2).max(0), j2.min(n))
        }
    }

    /// `(a / n)^m / m!` for m in `0..len`: Poisson probabilities without the normalising factor.
    fn scaled_powers(a: f64, n: f64, len: usize) -> Vec<f64> {
        let mut powers = vec![1.0; len];
        for m in 1..len {
            powers[m] = powers[m - 1] * (a / n) / m as f64;
        }
        powers
    }

    /// Full discrete convolution, as `numpy.convolve(a, b)`.
    fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; a.len() + b.len() - 1];
        for (i, &x) in a.iter().enumerate() {
            for (j, &y) in b.iter().enumerate() {
                out[i + j] += x * y;
            }
        }
        out
    }

    /// `P(D_n <= x)` by Pomeranz's recursion: scipy's `_kolmogn_Pomeranz`.
    fn pomeranz_cdf(n: u64, x: f64) -> f64 {
        let nf = n as f64;
        let t = nf * x;
        let ll = t.floor();
        let f = t - ll;
        let g = f.min(1.0 - f);
        let grid = PomeranzGrid {
            n: n as i64,
            ll: ll as i64,
            ceilf: i64::from(f > 0.0),
            roundf: i64::from(f > 0.5),
        };
        let npwrs = 2 * (grid.ll as usize + 1);
        let gpower = scaled_powers(g, nf, npwrs);
        let twogpower = scaled_powers(2.0 * g, nf, npwrs);
        let onem2gpower = scaled_powers(1.0 - 2.0 * g, nf, npwrs);

        let (mut v0, mut v1) = (vec![0.0; npwrs], vec![0.0; npwrs]);
        v1[0] = 1.0;
        let (mut v0s, mut v1s, mut expnt) = (0i64, 0i64, 0i32);
        let (mut j1, _) = grid.j1j2(0);
        for i in 1..(2 * grid.n + 2) {
            let k1 = j1;
            std::mem::swap(&mut v0, &mut v1);
            std::mem::swap(&mut v0s, &mut v1s);
            v1.fill(0.0);
            let (next_j1, j2) = grid.j1j2(i);
            j1 = next_j1;
            let pwrs = if i == 1 || i == 2 * grid.n + 1 {
                &gpower
            } else if i % 2 == 1 {
                &twogpower
            } else {
                &onem2gpower
            };
            let ln2 = j2 - k1 + 1;
            if ln2 > 0 {
                let start = (k1 - v0s) as usize;
                let conv = convolve(&v0[start..start + ln2 as usize], &pwrs[..ln2 as usize]);
                let conv_start = (j1 - k1) as usize;
                let conv_len = (j2 - j1 + 1) as usize;
                v1[..conv_len].copy_from_slice(&conv[conv_start..conv_start + conv_len]);
                let max = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if 0.0 < max && max < EM128 {
                    v1.iter_mut().for_each(|v| *v *= EP128);
                    expnt -= E128;
                }
                v1s = v0s + j1 - k1;
            }
        }
        let mut ans = v1[(grid.n - v1s) as usize];
        for m in 1..=n {
            if ans.abs() > EP128 {
                ans *= EM128;
                expnt += E128;
            }
            ans *= m as f64;
        }
        if expnt != 0 {
            ans = ldexp(ans, expnt);
        }
        clip(ans)
    }

    /// Pelz-Good approximation to `P(D_n <= x)`: scipy's `_kolmogn_PelzGood`, for `0 < x < 1`.
    fn pelz_good_cdf(n: u64, x: f64) -> f64 {
        use std::f64::consts::PI;
        let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
        let sqrt_2pi = (2.0 * PI).sqrt();
        let nf = n as f64;
        let z = nf.sqrt() * x;
        let (z2, z3, z4, z6) = (z * z, z.powf(3.0), z.powf(4.0), z.powf(6.0));
        let qlog = -pi2 / 8.0 / z2;
        if qlog < -708.0 {
            return 0.0;
        }
        let q = qlog.exp();

        let k1a = -z2;
        let k1b = pi2 / 4.0;
        let k2a = 6.0 * z6 + 2.0 * z4;
        let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
        let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
        let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
        let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
        let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
        let k3a = -30.0 * z6 - 90.0 * z.powf(8.0);

        let maxk = (16.0 * z / PI).ceil() as i64;
        let mut k0to3 = [0.0f64; 4];
        for k in (1..=maxk).rev() {
            let m = (2 * k - 1) as f64;
            let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
            let qpower = q.powf((8 * k) as f64);
            let coeffs = [
                1.0,
                k1a + k1b * m2,
                k2a + k2b * m2 + k2c * m4,
                k3a + k3b * m2 + k3c * m4 + k3d * m6,
            ];
            for (acc, c) in k0to3.iter_mut().zip(coeffs) {
                *acc = *acc * qpower + c;
            }
        }
        let divisors = [z, 6.0 * z4, 72.0 * z.powf(7.0), 6480.0 * z.powf(10.0)];
        for (acc, div) in k0to3.iter_mut().zip(divisors) {
            *acc = *acc * q * sqrt_2pi / div;
        }

        let q = (-pi2 / 2.0 / z2).exp();
        let sqrt3z = 3f64.sqrt() * z;
        let (mut k2extra, mut k3extra) = (0.0, 0.0);
        for k in (1..=maxk).rev() {
            let ksq = (k * k) as f64;
            let qpwr = q.powf(ksq);
            let kspi = PI * k as f64;
            k2extra += ksq * qpwr;
            k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qpwr;
        }
        k0to3[2] += k2extra * (pi2 * sqrt_2pi / (-36.0 * z3));
        k0to3[3] += k3extra * (pi2 * sqrt_2pi / (216.0 * z6));
        k0to3
            .iter()
            .enumerate()
            .map(|(i, &term)| term / nf.powf(i as f64 / 2.0))
            .sum()
    }

    /// `P(D+_n >= x)` of the one-sided Smirnov statistic, as cephes' `smirnov(n, x)`.
    ///
    /// Valid where `_kolmogn` calls it: `n >= 3` and `1/n < x < 1 - 1/n`, with
    /// `n x^2 < 370` when `n > 140`. Cephes sums the same Birnbaum-Tingey series in
    /// double-double arithmetic; here every term is positive and evaluated in log
    /// space, with the log binomial accumulated by compensated summation, which is
    /// accurate to about `1e-12` relative.
    fn smirnov_sf(n: u64, x: f64) -> f64 {
        let nf = n as f64;
        if -2.0 * nf * x * x < MINLOG {
            return 0.0;
        }
        if n > SMIRNOV_MAX_COMPUTE_N {
            let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
            return if logp < -std::f64::consts::LN_2 {
                logp.exp()
            } else {
                1.0 + logp.exp_m1()
            };
        }
        let nxfl = (nf * x).floor() as u64;
        birnbaum_tingey_sum(n, x, n - nxfl - 1)
    }

    /// `sum_{v=0}^{v_max} binom(n, v) x (x + v/n)^(v-1) (1 - x - v/n)^(n-v)`, all terms positive.
    fn birnbaum_tingey_sum(n: u64, x: f64, v_max: u64) -> f64 {
        let nf = n as f64;
        let ln_x = x.ln();
        let mut ln_binom = NeumaierSum::default();
        let mut total = 0.0;
        for v in 0..=v_max {
            let vf = v as f64;
            let rest = 1.0 - x - vf / nf;
            if rest > 0.0 {
                let ln_term = ln_binom.value()
                    + ln_x
                    + (vf - 1.0) * (x + vf / nf).ln()
                    + (nf - vf) * rest.ln();
                total += ln_term.exp();
            }
            ln_binom.add(((nf - vf) / (vf + 1.0)).ln());
        }
        total
    }

    /// Neumaier's compensated sum.
    #[derive(Default)]
    struct NeumaierSum {
        sum: f64,
        compensation: f64,
    }

    impl NeumaierSum {
        /// Adds `value` to the running sum.
        fn add(&mut self, value: f64) {
            let t = self.sum + value;
            self.compensation += if self.sum.abs() >= value.abs() {
                (self.sum - t) + value
            } else {
                (value - t) + self.sum
            };
            self.sum = t;
        }

        /// The compensated total.
        fn value(&self) -> f64 {
            self.sum + self.compensation
        }
    }
}

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
