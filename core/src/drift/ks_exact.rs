//! Exact two-sided p-values of the two-sample KS statistic (scipy's `_attempt_exact_2kssamp`).

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
