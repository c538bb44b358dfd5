"""The drift monitor on data drawn like the training data, and on shifted data.

Features are autocorrelated: AR(1) series with coefficients from 0 to 0.99 (and one with Student-t
innovations) stand in for them. The monitor's false-alarm rate over many seeded replicates must stay
at (or below) its nominal family-wise level, where the textbook test alarms on nearly every check,
and it must detect shifted streams. Its statistics are checked against scipy and statsmodels.
"""

import json
import math

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import ks_2samp
from statsmodels.stats.multitest import multipletests

from lbml.live.drift import DriftConfig, DriftMonitor, autocorrelation_time, holm, ks_distance, ks_pvalue

pytestmark = pytest.mark.timeout(300)

PHIS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.5)  # the last one with t(3) innovations
NAMES = tuple(f"f{j}" for j in range(len(PHIS)))
N_REF, WINDOW, ALPHA = 3000, 240, 0.05


def _features(rng: np.random.Generator, n: int, burn: int = 2000) -> np.ndarray:
    out = np.empty((n, len(PHIS)))
    for j, phi in enumerate(PHIS):
        shocks = rng.standard_t(3, n + burn) if j == len(PHIS) - 1 else rng.standard_normal(n + burn)
        out[:, j] = lfilter([1.0], [1.0, -phi], shocks)[burn:] * math.sqrt(1 - phi**2)
    return out


def _check(reference: np.ndarray, live: np.ndarray, tmp_path) -> dict:
    monitor = DriftMonitor(NAMES, reference, DriftConfig(every_bars=WINDOW, window=WINDOW, alpha=ALPHA), tmp_path)
    for i, row in enumerate(live):
        monitor.add(i, row)
    [(_, n, drifted, _, flagged, detail)] = monitor.take_reports()
    return {"flagged": bool(flagged), "drifted": drifted, "detail": json.loads(detail)}


def _replicate(seed: int, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    data = _features(np.random.default_rng(seed), N_REF + WINDOW)
    reference, live = data[:N_REF], data[N_REF:]
    return reference, live if shift is None else live + shift


def test_false_alarm_rate_on_same_distribution_data_stays_at_the_nominal_level(tmp_path):
    replicates = 300
    alarms = textbook = 0
    for seed in range(replicates):
        reference, live = _replicate(seed)
        alarms += _check(reference, live, tmp_path)["flagged"]
        # The textbook test: independent-sample KS p-values, even Holm-adjusted.
        raw = [ks_2samp(reference[:, j], live[:, j], method="asymp").pvalue for j in range(len(PHIS))]
        textbook += min(holm(raw)) < ALPHA
    rate = alarms / replicates
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / replicates)
    print(f"false alarms: corrected {alarms}/{replicates}, textbook {textbook}/{replicates}")
    assert rate <= bound
    assert textbook / replicates > 0.5  # the autocorrelation is what the correction is for


@pytest.mark.parametrize(("shift", "features", "min_rate"), [
    (0.5, range(len(PHIS)), 0.9),  # every feature moves half a standard deviation
    (1.0, (2, 3), 0.9),  # two moderately persistent features move one standard deviation
])
def test_detection_rate_on_a_shifted_stream_is_high(tmp_path, shift, features, min_rate):
    replicates = 100
    offset = np.zeros(len(PHIS))
    offset[list(features)] = shift
    detected = 0
    for seed in range(1000, 1000 + replicates):
        reference, live = _replicate(seed, offset)
        result = _check(reference, live, tmp_path)
        detected += result["flagged"]
    print(f"shift {shift} on {list(features)}: detected {detected}/{replicates}")
    assert detected / replicates >= min_rate


def test_statistics_equal_scipy_and_statsmodels():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=2000), rng.normal(0.2, 1.1, size=240)
    expected = ks_2samp(a, b, method="asymp")
    d = ks_distance(np.sort(a), b)
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert ks_pvalue(d, len(b), len(a)) == pytest.approx(expected.pvalue, rel=1e-9)

    p = rng.uniform(0, 0.2, size=25).tolist()
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist(), abs=1e-15)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_autocorrelation_time_of_the_median_indicator_matches_theory(phi):
    # For a Gaussian AR(1) the indicator x_t <= median has autocorrelation (2/pi) arcsin(phi^k).
    x = lfilter([1.0], [1.0, -phi], np.random.default_rng(11).standard_normal(400_000))
    theory = 1 + 2 * sum((2 / math.pi) * math.asin(phi**k) for k in range(1, 2000))
    assert autocorrelation_time(x <= np.median(x)) == pytest.approx(theory, rel=0.1)


def test_slow_or_constant_features_are_reported_untested_not_drifted(tmp_path):
    rng = np.random.default_rng(3)
    t = np.arange(N_REF + WINDOW)
    time_of_day = np.sin(2 * np.pi * t / 1440)  # deterministic: a few hours never look like a whole day
    constant = np.full(len(t), 0.0001)
    data = np.column_stack([time_of_day, constant, rng.normal(size=len(t))])
    monitor = DriftMonitor(("tod", "const", "noise"), data[:N_REF], DriftConfig(every_bars=WINDOW, window=WINDOW),
                           tmp_path)
    for i, row in enumerate(data[N_REF:]):
        monitor.add(i, row)
    [(_, n, drifted, _, flagged, detail)] = monitor.take_reports()
    detail = json.loads(detail)
    assert (n, drifted, flagged) == (1, 0, 0)
    assert not detail["tod"]["tested"] and not detail["const"]["tested"] and detail["noise"]["tested"]
