//! Small-sample tests for rollout gates: Mann-Whitney U (is the canary slower?) and
//! the two-proportion z-test (does the canary fail more often?). Both are one-sided,
//! with the normal approximation that scipy's `mannwhitneyu(..., method="asymptotic")`
//! and statsmodels' `proportions_ztest` use.

/// A test's statistic and its one-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// The statistic (U, or z).
    pub statistic: f64,
    /// One-sided p-value for "the first sample is greater".
    pub pvalue: f64,
}

/// `P(Z > z)` for a standard normal `Z`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error
/// below 1.2e-7), enough for p-values compared against thresholds like 0.01.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

/// Mann-Whitney U test that `a` tends to be greater than `b`, with tie and continuity
/// corrections. `None` if either sample is empty or every value is tied.
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> Option<TestResult> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = pooled.len();
    let (mut rank_sum_a, mut tie_term, mut start) = (0.0, 0.0, 0);
    while start < n {
        let mut end = start + 1;
        while end < n && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        let ties = (end - start) as f64;
        let mid_rank = (start + end + 1) as f64 / 2.0;
        rank_sum_a += mid_rank
            * pooled[start..end]
                .iter()
                .filter(|(_, from_a)| *from_a)
                .count() as f64;
        tie_term += ties * ties * ties - ties;
        start = end;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if variance <= 0.0 {
        return None;
    }
    let z = (u - mean - 0.5) / variance.sqrt();
    Some(TestResult {
        statistic: u,
        pvalue: normal_sf(z),
    })
}

/// Two-proportion z-test (pooled) that `x1 / n1` is greater than `x2 / n2`. `None`
/// if either count is zero or the pooled rate is 0 or 1.
pub fn two_proportion_greater(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<TestResult> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = (p1 - p2) / se;
    Some(TestResult {
        statistic: z,
        pvalue: normal_sf(z),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_known_values() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959_963_985) - 0.025).abs() < 1e-7);
        assert!((normal_sf(-1.644_853_627) - 0.95).abs() < 1e-7);
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy.stats.mannwhitneyu([3,4,5,6,7], [1,2,3,4], alternative="greater",
        //     method="asymptotic") -> U=18.0, p=0.031968...
        let result =
            mann_whitney_greater(&[3.0, 4.0, 5.0, 6.0, 7.0], &[1.0, 2.0, 3.0, 4.0]).expect("test");
        assert_eq!(result.statistic, 18.0);
        assert!(
            (result.pvalue - 0.031_968_373).abs() < 1e-6,
            "{}",
            result.pvalue
        );
        assert!(mann_whitney_greater(&[1.0], &[1.0]).is_none());
    }

    #[test]
    fn two_proportions_detect_a_higher_rate() {
        // statsmodels proportions_ztest([30, 10], [200, 200], alternative="larger")
        //     -> z=3.3333, p=0.000429060
        let result = two_proportion_greater(30, 200, 10, 200).expect("test");
        assert!((result.statistic - 3.333_333_333).abs() < 1e-6);
        assert!((result.pvalue - 0.000_429_060).abs() < 1e-7);
        assert!(two_proportion_greater(0, 100, 0, 100).is_none());
    }
}
