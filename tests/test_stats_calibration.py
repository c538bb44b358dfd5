"""PSR/DSR against the worked example, PBO on skill-less and skilled trials, calibration maps."""

import math

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from lbml.models.calibration import (
    Calibrator,
    calibration_method,
    expected_calibration_error,
    fit_calibrator,
    probability_scores,
)
from lbml.cost_model import CostModel
from lbml.research.evaluation import trade_grid
from lbml.research.payoff import TradeOutcomes
from lbml.sizing import KellyParams, Payoff
from lbml.models.base import ModelPlugin
from lbml.research.stats import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_bootstrap_ci,
)


def _normal_returns_with_sharpe(sr: float, t: int, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=t)
    z = (z - z.mean()) / z.std(ddof=1)
    return z + sr  # exactly mean sr, std 1


def test_dsr_reproduces_the_worked_example():
    # Hourly bars, one year, annualised SR 2: DSR ≈ 0.98 (1 trial), 0.66 (10), 0.30 (100), 0.11 (1000).
    t = 24 * 365
    r = _normal_returns_with_sharpe(2 / math.sqrt(t), t)
    got = [deflated_sharpe_ratio(r, n) for n in (1, 10, 100, 1000)]
    assert got == pytest.approx([0.98, 0.66, 0.30, 0.11], abs=0.02)
    assert probabilistic_sharpe_ratio(r) == pytest.approx(got[0])


def test_expected_max_sharpe_grows_with_trials():
    assert expected_max_sharpe(1.0, 1) == 0.0
    values = [expected_max_sharpe(1.0, n) for n in (2, 10, 100, 1000)]
    assert values == sorted(values) and values[-1] == pytest.approx(3.26, abs=0.01)


def test_bootstrap_interval_contains_the_sample_sharpe():
    r = _normal_returns_with_sharpe(0.1, 500, seed=1)
    low, high = sharpe_bootstrap_ci(r, reps=300, seed=0)
    assert low < 0.1 < high and high - low < 0.3


def test_pbo_is_high_without_skill_and_low_with_skill():
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.01, size=(800, 20))
    assert probability_of_backtest_overfitting(noise, n_blocks=8)["pbo"] > 0.3
    skilled = noise.copy()
    skilled[:, 0] += 0.004  # one trial is genuinely better everywhere
    result = probability_of_backtest_overfitting(skilled, n_blocks=8)
    assert result["pbo"] < 0.05 and result["n_splits"] == math.comb(8, 4)


def _model_and_data(registry, n=3000):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(n, 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-2.5 * X[:, 0]))).astype(int)
    model = registry.model("xgboost")(n_estimators=50, early_stopping_rounds=None, n_jobs=1).fit(X[:1500], y[:1500])
    return model, X, y


@pytest.mark.parametrize("n_cal", [400, 1500])
def test_calibrator_json_reproduces_sklearn(registry, tmp_path, n_cal):
    model, X, y = _model_and_data(registry)
    Xc, yc = X[1500 : 1500 + n_cal], y[1500 : 1500 + n_cal]
    method = calibration_method(n_cal)
    assert method == ("sigmoid" if n_cal < 1000 else "isotonic")
    cal = fit_calibrator(model, Xc, yc)
    reference = CalibratedClassifierCV(FrozenEstimator(model), method=method).fit(Xc, yc)
    Xt = X[-500:]
    raw = model.predict_proba(Xt)[:, 1]
    np.testing.assert_allclose(cal.apply(raw), reference.predict_proba(Xt)[:, 1], atol=1e-9)
    cal.save(tmp_path)
    np.testing.assert_allclose(Calibrator.load(tmp_path).apply(raw), cal.apply(raw))


class _Overconfident(ModelPlugin):
    """A fitted model whose probabilities are pushed away from 0.5 (logit × 3)."""

    name = "overconfident"

    def __init__(self, base=None):
        self.base = base

    def fit(self, X, y, **kwargs):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        p = np.clip(self.base.predict_proba(X)[:, 1], 1e-6, 1 - 1e-6)
        q = 1 / (1 + np.exp(-3 * np.log(p / (1 - p))))
        return np.column_stack([1 - q, q])


def test_calibration_repairs_a_distorted_model(registry):
    model, X, y = _model_and_data(registry, n=8000)
    distorted = _Overconfident(model).fit(X, y)
    Xc, yc, Xt, yt = X[1500:4000], y[1500:4000], X[4000:], y[4000:]
    raw = distorted.predict_proba(Xt)[:, 1]
    cal = fit_calibrator(distorted, Xc, yc)  # 2,500 samples: isotonic
    fixed = cal.apply(raw)
    ece_raw, ece_fixed = expected_calibration_error(yt, raw), expected_calibration_error(yt, fixed)
    assert ece_raw > 0.08 and ece_fixed < ece_raw / 2
    assert probability_scores(yt, fixed)["brier"] < probability_scores(yt, raw)["brier"]


def test_a_calibration_map_never_inverts_the_model(registry):
    model, X, y = _model_and_data(registry)
    cal = fit_calibrator(model, X[1500:1800], 1 - y[1500:1800], "sigmoid")  # labels anti-correlated
    out = cal.apply(model.predict_proba(X[-200:])[:, 1])
    assert np.ptp(out) == 0.0 and out[0] == pytest.approx(1 - y[1500:1800].mean())


def test_trade_returns_follow_the_ev_rule_without_overlap():
    ns = 60_000_000_000
    t0 = np.arange(6) * ns
    p = np.array([0.9, 0.9, 0.9, 0.5, 0.1, 0.6])
    # each bar's simulated bracket trade: +1 % long / -1 % short, except bar 4 (the market fell 2 %)
    long_r = np.array([0.01, 0.01, 0.01, 0.01, -0.02, 0.01])
    outcomes = TradeOutcomes(long_r, -long_r, np.full(6, 2.0), np.full(6, 2.0))
    params = KellyParams(0.25, 3.0, 0.5, 10.0, Payoff.from_brackets(0.01, 0.01, 2.0),
                         CostModel(taker_fee=0.0005, slippage_rate=0.0), ev_margin=0.1)
    grid = trade_grid(p, outcomes, t0, ns, params)
    # break-even 0.55 + margin 0.1: trade at 0 (held 2 bars: 1 skipped), 2 trades again, no trade at 3,
    # short at 4, 0.6 below the threshold at 5; each net of the 0.1 % round trip
    assert grid.returns.tolist() == pytest.approx([0.009, 0.0, 0.009, 0.0, 0.019, 0.0])
    assert grid.side.tolist() == [1, 0, 1, 0, -1, 0]
    assert grid.cost[grid.side != 0] == pytest.approx([0.001] * 3)