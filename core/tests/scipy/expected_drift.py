"""Expected values for core/tests/drift_vs_scipy.rs, computed with numpy and scipy.

Rerun from the repository root after changing the cases (needs only numpy and scipy):

    pip install numpy scipy
    python3 core/tests/scipy/expected_drift.py

It rewrites core/tests/data/drift_expected.json, which holds every input and the
output scipy (or numpy, for PSI) gives for it. The Rust test asserts each value to
1e-6 absolute. Stored sample values are rounded to 6 decimals so that the JSON text
parses to the same doubles in Python and in Rust.

Samples larger than 10,000 values (which make `ks_2samp(method='auto')` take its
asymptotic path) are not stored; they are generated on both sides by the
"modular" formula:

    value[i] = ((i * mul) % modulus) / modulus * scale + offset,  i = 0..n-1

with integer arithmetic for the product and remainder, so both sides get
identical doubles.
"""

import json
from pathlib import Path

import numpy as np
import scipy
from scipy import stats
from scipy.spatial.distance import jensenshannon

# Shares of 0 are replaced by this before the logarithm in PSI (see drift.rs).
PSI_EPSILON = 1e-4

OUT = Path(__file__).resolve().parent.parent / "data" / "drift_expected.json"


def stored(values):
    """Round to 6 decimals, so the JSON text is exact in both languages."""
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), 6)]


def modular(n, mul, modulus, scale, offset):
    """The formula-generated sample described in the module docstring."""
    i = np.arange(n, dtype=np.int64)
    return ((i * mul) % modulus).astype(np.float64) / modulus * scale + offset


def psi(reference, live):
    """PSI as drift.rs defines it: shares, zeros replaced by epsilon, then the sum."""
    ref = np.asarray(reference, dtype=np.float64)
    liv = np.asarray(live, dtype=np.float64)
    ref = ref / ref.sum()
    liv = liv / liv.sum()
    ref = np.where(ref == 0.0, PSI_EPSILON, ref)
    liv = np.where(liv == 0.0, PSI_EPSILON, liv)
    return float(np.sum((liv - ref) * np.log(liv / ref)))


def ks_stored_cases(rng):
    """Two-sample KS cases whose samples are stored in the JSON."""
    same = stored(rng.normal(size=50))
    samples = {
        "equal_sizes_small": (rng.normal(size=8), rng.normal(0.5, 1.0, size=8)),
        "unequal_sizes_small": (rng.normal(size=7), rng.normal(size=13)),
        "one_vs_five": (rng.normal(size=1), rng.normal(size=5)),
        "ties_discrete_poisson": (rng.poisson(2.0, size=40), rng.poisson(2.6, size=55)),
        "ties_across_samples": ([0, 0, 1, 1, 2, 2], [1, 1, 1, 2, 2, 3, 3]),
        "pixels_0_to_16": (rng.integers(0, 17, size=600), rng.integers(0, 15, size=400)),
        "n1000_vs_n300_shifted": (rng.normal(size=1000), rng.normal(0.15, 1.0, size=300)),
        "n1000_vs_n300_same": (rng.normal(size=1000), rng.normal(size=300)),
        "n500_vs_n500": (rng.normal(size=500), rng.normal(0.1, 1.1, size=500)),
        "identical_samples": (same, same),
        "disjoint_samples": (rng.uniform(0, 1, size=20), rng.uniform(2, 3, size=30)),
    }
    cases = []
    for name, (a, b) in samples.items():
        a, b = stored(a), stored(b)
        r = stats.ks_2samp(a, b, alternative="two-sided", method="auto")
        cases.append({
            "name": name,
            "a": a,
            "b": b,
            "statistic": float(r.statistic),
            "pvalue": float(r.pvalue),
        })
    return cases


def ks_generated_cases():
    """Two-sample KS cases with max(n1, n2) > 10,000 (scipy's asymptotic path)."""
    specs = {
        "asymp_12000_vs_11000_close": (
            (12000, 7919, 12007, 1.0, 0.0), (11000, 104729, 11003, 1.0, 0.0)),
        "asymp_12000_vs_11000_scaled": (
            (12000, 7919, 12007, 1.0, 0.0), (11000, 104729, 11003, 1.01, 0.0)),
        "asymp_12000_vs_11000_shifted": (
            (12000, 7919, 12007, 1.0, 0.0), (11000, 104729, 11003, 1.0, 0.03)),
        "asymp_15000_vs_200": (
            (15000, 7919, 15013, 1.0, 0.0), (200, 37, 211, 1.0, 0.05)),
        "asymp_10001_vs_60": (
            (10001, 7919, 10007, 1.0, 0.0), (60, 37, 61, 1.0, 0.1)),
    }
    cases = []
    for name, (sa, sb) in specs.items():
        r = stats.ks_2samp(modular(*sa), modular(*sb), alternative="two-sided",
                           method="auto")
        keys = ("n", "mul", "modulus", "scale", "offset")
        cases.append({
            "name": name,
            "a": dict(zip(keys, sa)),
            "b": dict(zip(keys, sb)),
            "statistic": float(r.statistic),
            "pvalue": float(r.pvalue),
        })
    return cases


def kstwo_sf_cases():
    """scipy.stats.kstwo.sf(x, n) over every branch of scipy's _kolmogn."""
    ns = [1, 2, 5, 10, 60, 100, 140, 141, 197, 1000, 5739, 100000, 150000, 2000000]
    cases = []
    for n in ns:
        xs = {0.5, 0.6, 0.9, 0.99, 1.0, 1.0 - 1.0 / n}
        xs |= {t / n for t in (0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 7.3)}
        xs |= {float(np.sqrt(s / n)) for s in (0.05, 0.3, 0.754693, 1.0, 2.0, 2.2,
                                               3.0, 4.0, 5.0, 17.0, 18.0, 100.0,
                                               369.0, 400.0)}
        xs |= {float((c / n) ** (2.0 / 3.0)) for c in (0.5, 1.4, 2.0)}
        for x in sorted(v for v in xs if 0.0 < v <= 1.0):
            cases.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    return cases


def psi_cases():
    """PSI on count vectors and share vectors, including empty bins."""
    inputs = {
        "counts_with_empty_live_bin": ([120, 300, 280, 200, 100], [90, 310, 0, 250, 150]),
        "counts_with_empty_reference_bin": ([0, 50, 50], [10, 45, 45]),
        "empty_bin_in_both": ([10, 0, 30], [20, 0, 20]),
        "shares_identical": ([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]),
        "shares_shifted": ([0.1] * 10, [0.02, 0.03, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.25]),
        "counts_vs_shares": ([5, 5, 10], [0.25, 0.25, 0.5]),
    }
    return [{"name": k, "reference": [float(v) for v in r], "live": [float(v) for v in l],
             "psi": psi(r, l)} for k, (r, l) in inputs.items()]


def js_cases(rng):
    """Jensen-Shannon distance (base 2) on several distributions, some with zeros."""
    inputs = {
        "uniform_vs_peaked": ([0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]),
        "with_zeros": ([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]),
        "disjoint_support": ([1.0, 0.0], [0.0, 1.0]),
        "identical": ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]),
        "unnormalised_counts": ([10, 20, 30, 0], [3, 3, 3, 3]),
        "random_16_bins": (stored(rng.dirichlet(np.ones(16))), stored(rng.dirichlet(np.ones(16)))),
    }
    return [{"name": k, "p": [float(v) for v in p], "q": [float(v) for v in q],
             "distance": float(jensenshannon(p, q, base=2))} for k, (p, q) in inputs.items()]


def main():
    rng = np.random.default_rng(20240607)
    data = {
        "generated_by": "core/tests/scipy/expected_drift.py",
        "scipy_version": scipy.__version__,
        "numpy_version": np.__version__,
        "psi_epsilon": PSI_EPSILON,
        "ks_2samp": ks_stored_cases(rng),
        "ks_2samp_generated": ks_generated_cases(),
        "kstwo_sf": kstwo_sf_cases(),
        "psi": psi_cases(),
        "jensen_shannon": js_cases(rng),
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
