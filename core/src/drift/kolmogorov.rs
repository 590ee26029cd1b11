//! The two-sided one-sample KS distribution, ported from scipy's `stats/_ksstats.py`
//! and, for the one-sided Smirnov tail, `xsf/cephes/kolmogorov.h`.

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
            let ln_term =
                ln_binom.value() + ln_x + (vf - 1.0) * (x + vf / nf).ln() + (nf - vf) * rest.ln();
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
