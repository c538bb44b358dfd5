"""GARCH(1,1) in the volatility layer: a real fit on 1-minute returns, checked outside ``arch``.

Issue #16 item 6: on 100 × 1-minute log returns ``arch`` stopped at its starting grid point
(α = 0.1) while reporting success. The plugin now fits on unit-variance returns and checks that
the optimiser left its starting values. The log-likelihood is recomputed here by hand
(standardised Student t with scipy), in log-return units, for the new and the old parameters.
"""

import logging
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lbml.data.frames import InstrumentData
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.plugins import load_registry

from .conftest import shared_file

N_BARS = 20_001


@pytest.fixture(scope="module")
def btc_bars():
    path = shared_file("klines_1m", "binance_spot_2026-03-23_to_2026-04-22", "BTCUSDT-1m.csv.gz")
    df = pd.read_csv(path, nrows=N_BARS)
    df.index = pd.to_datetime(df.pop("open_time"), unit="ms", utc=True)
    return df


def _returns(bars):
    return np.diff(np.log(bars["close"].to_numpy(np.float64)))


def _garch_t_loglik(r, mu, omega, alpha, beta, nu):
    """Log-likelihood of returns r under GARCH(1,1) with standardised-t shocks (r units).

    σ²(0) is arch's backcast (exponentially weighted first 75 squared residuals, λ = 0.94),
    computed from the sample-mean residuals so that every parameter set starts from the same σ².
    """
    eps = r - mu
    tau = min(75, len(r))
    w = 0.94 ** np.arange(tau)
    backcast = float(np.sum((r[:tau] - r.mean()) ** 2 * w / w.sum()))
    sigma2 = np.empty(len(r))
    prev_var, prev_eps2 = backcast, backcast
    for i in range(len(r)):
        sigma2[i] = omega + alpha * prev_eps2 + beta * prev_var
        prev_var, prev_eps2 = sigma2[i], eps[i] * eps[i]
    c = math.sqrt(nu / (nu - 2.0))  # std t(ν) has variance ν/(ν−2)
    z = eps / np.sqrt(sigma2)
    return float(np.sum(stats.t.logpdf(z * c, nu) + math.log(c) - 0.5 * np.log(sigma2)))


def _old_fit(r):
    """The fit as it was: arch on 100 × returns, parameters converted back to return units."""
    from arch import arch_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = arch_model(100.0 * r, mean="Constant", vol="GARCH", p=1, q=1, dist="t").fit(disp="off")
    p = res.params
    return dict(mu=p["mu"] / 100, omega=p["omega"] / 1e4, alpha=p["alpha[1]"], beta=p["beta[1]"], nu=p["nu"])


def test_garch_fits_real_one_minute_returns_better_than_the_old_scaling(btc_bars):
    vol = load_registry().feature("volatility")()
    vol.fit(btc_bars)
    state = vol.fitted_state()
    g, fit = state["garch"], state["garch_fit"]
    r = _returns(btc_bars)
    # the optimiser moved away from its starting grid point and reported success
    assert fit["converged"] is True
    assert fit["iterations"] > 1 and fit["n_returns"] == len(r)
    assert abs(g["alpha"] - fit["start_alpha"]) > 1e-3 and abs(g["beta"] - fit["start_beta"]) > 1e-3
    assert (g["alpha"], g["beta"]) != pytest.approx((0.1, 0.8), abs=1e-3)
    assert 0 < g["alpha"] + g["beta"] <= 1 + 1e-9

    # the old ×100 fit really was stuck at alpha = 0.1 (the symptom of the issue)
    old = _old_fit(r)
    assert old["alpha"] == pytest.approx(0.1, abs=1e-6)

    # same likelihood, computed by hand in return units, for both parameter sets
    s = g["scale"]
    new_params = dict(mu=g["mu"] / s, omega=g["omega"] / s**2, alpha=g["alpha"], beta=g["beta"], nu=fit["nu"])
    ll_new = _garch_t_loglik(r, **new_params)
    ll_old = _garch_t_loglik(r, **old)
    assert ll_new > ll_old + 10.0  # 20k returns: the old fit is clearly worse, not a rounding tie
    # the recorded log-likelihood is the hand-computed one (up to arch's backcast residual mean)
    assert fit["loglikelihood"] == pytest.approx(ll_new, abs=1.0)


def test_streaming_garch_equals_the_direct_recursion_with_the_fitted_parameters(btc_bars):
    registry = load_registry()
    train, live = btc_bars.iloc[:10_001], btc_bars.iloc[10_000:]
    vol = registry.feature("volatility")()
    vol.fit(train)
    g = vol.fitted_state()["garch"]
    data = InstrumentData("BTCUSDT", live)
    got = compute_features(FeaturePipeline([vol]), data, live)["vol_garch"].to_numpy()
    r = _returns(live)
    var = g["initial_variance"]
    want = [math.nan]
    for x in r:
        e = g["scale"] * x - g["mu"]
        var = g["omega"] + g["alpha"] * e * e + g["beta"] * var
        want.append(math.sqrt(var) / g["scale"])
    np.testing.assert_allclose(got, np.array(want), rtol=1e-10, equal_nan=True)  # np.log vs math.log
    assert np.isfinite(got[1:]).all() and 1e-5 < np.median(got[1:]) < 1e-2  # per-minute σ, return units


def test_a_failed_fit_is_recorded_and_announced_in_one_line(btc_bars, monkeypatch, caplog):
    from arch.univariate.base import ARCHModel

    real_fit = ARCHModel.fit

    def one_iteration(self, *args, **kwargs):  # the optimiser runs out of iterations
        return real_fit(self, *args, options={"maxiter": 1}, **kwargs)

    monkeypatch.setattr(ARCHModel, "fit", one_iteration)
    vol = load_registry().feature("volatility")()
    with caplog.at_level(logging.WARNING, logger="plugins.features_volatility"):
        vol.fit(btc_bars.iloc[:3000])
    fit = vol.fitted_state()["garch_fit"]
    assert fit["converged"] is False
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "\n" not in warned[0] and "did not converge" in warned[0]


def test_a_fold_fit_on_separate_segments_converges_and_counts_no_return_across_the_gap(btc_bars):
    """CPCV folds fit on training bars before and after a test block (``fit_segments``)."""
    vol = load_registry().feature("volatility")()
    first, second = btc_bars.iloc[:8_000], btc_bars.iloc[12_000:20_000]
    vol.fit_segments([first, second])
    fit = vol.fitted_state()["garch_fit"]
    assert fit["converged"] is True and fit["n_returns"] == len(first) - 1 + len(second) - 1
    r = np.concatenate([_returns(first), _returns(second)])
    assert vol.fitted_state()["garch"]["scale"] == pytest.approx(1.0 / np.std(r), rel=1e-12)
