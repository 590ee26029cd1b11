//! The drift statistics against values computed by numpy and scipy.
//!
//! `tests/data/drift_expected.json` is written by `tests/scipy/expected_drift.py`
//! (see its header to rerun it); every value must match to 1e-6 absolute.

use edgewise_core::drift::{PSI_EPSILON, jensen_shannon_distance, ks_2samp, kstwo_sf, psi};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Expected {
    psi_epsilon: f64,
    ks_2samp: Vec<KsCase<Vec<f64>>>,
    ks_2samp_generated: Vec<KsCase<Modular>>,
    kstwo_sf: Vec<KstwoCase>,
    psi: Vec<PsiCase>,
    jensen_shannon: Vec<JsCase>,
}

#[derive(Deserialize)]
struct KsCase<S> {
    name: String,
    a: S,
    b: S,
    statistic: f64,
    pvalue: f64,
}

/// A sample generated as `((i * mul) % modulus) / modulus * scale + offset`, as in the script.
#[derive(Deserialize)]
struct Modular {
    n: u64,
    mul: u64,
    modulus: u64,
    scale: f64,
    offset: f64,
}

impl Modular {
    fn values(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| {
                ((i * self.mul) % self.modulus) as f64 / self.modulus as f64 * self.scale
                    + self.offset
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct KstwoCase {
    n: u64,
    x: f64,
    sf: f64,
}

#[derive(Deserialize)]
struct PsiCase {
    name: String,
    reference: Vec<f64>,
    live: Vec<f64>,
    psi: f64,
}

#[derive(Deserialize)]
struct JsCase {
    name: String,
    p: Vec<f64>,
    q: Vec<f64>,
    distance: f64,
}

fn expected() -> Expected {
    serde_json::from_str(include_str!("data/drift_expected.json")).unwrap()
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{what}: got {got:e}, scipy gives {want:e} (difference {:e})",
        (got - want).abs()
    );
}

fn check_ks(name: &str, a: &[f64], b: &[f64], statistic: f64, pvalue: f64) {
    let result = ks_2samp(a, b).unwrap();
    assert_close(&format!("{name} statistic"), result.statistic, statistic);
    assert_close(&format!("{name} pvalue"), result.pvalue, pvalue);
}

#[test]
fn psi_epsilon_matches_the_script() {
    assert_eq!(expected().psi_epsilon, PSI_EPSILON);
}

#[test]
fn ks_2samp_matches_scipy_on_stored_samples() {
    let cases = expected().ks_2samp;
    assert!(cases.len() >= 10);
    for case in &cases {
        check_ks(&case.name, &case.a, &case.b, case.statistic, case.pvalue);
        let swapped = format!("{} (swapped)", case.name);
        check_ks(&swapped, &case.b, &case.a, case.statistic, case.pvalue);
    }
}

#[test]
fn ks_2samp_matches_scipy_on_the_asymptotic_path() {
    let cases = expected().ks_2samp_generated;
    assert!(!cases.is_empty());
    for case in &cases {
        let (a, b) = (case.a.values(), case.b.values());
        assert!(
            a.len().max(b.len()) > 10_000,
            "{} must take the asymptotic path",
            case.name
        );
        check_ks(&case.name, &a, &b, case.statistic, case.pvalue);
    }
}

#[test]
fn kstwo_sf_matches_scipy_on_every_branch() {
    let cases = expected().kstwo_sf;
    assert!(cases.len() > 100);
    for case in &cases {
        let got = kstwo_sf(case.n, case.x).unwrap();
        assert_close(&format!("kstwo.sf({}, n={})", case.x, case.n), got, case.sf);
    }
}

#[test]
fn psi_matches_numpy() {
    for case in &expected().psi {
        assert_close(
            &case.name,
            psi(&case.reference, &case.live).unwrap(),
            case.psi,
        );
    }
}

#[test]
fn jensen_shannon_distance_matches_scipy() {
    for case in &expected().jensen_shannon {
        let got = jensen_shannon_distance(&case.p, &case.q).unwrap();
        assert_close(&case.name, got, case.distance);
    }
}
