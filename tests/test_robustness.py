"""Robustness statistics: bootstrap bands, Hurst exponent, regime labels without look-ahead."""

import numpy as np
import pandas as pd
import pytest

from lbml.workflows.robustness import (
    block_bootstrap,
    hurst_exponent,
    max_drawdown,
    regime_table,
    sweep_runs,
    sweep_split,
    sweep_variants,
)
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model
from lbml.workflows.run import backtest
from .conftest import without_edge_gate


def test_block_bootstrap_paths_and_percentiles():
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, 400)
    mc = block_bootstrap(returns, 1000.0, n_paths=1000, seed=5)
    assert mc.n_paths == 1000 and mc.block_length >= 1
    finals = [mc.final_equity[p] for p in (5, 25, 50, 75, 95)]
    assert finals == sorted(finals)
    # resampling keeps the sum of log-returns on average: the median sits near the actual final value
    actual = 1000.0 * np.prod(1 + returns)
    assert finals[0] < actual < finals[-1]
    dds = [mc.max_drawdown[p] for p in (5, 50, 95)]
    assert dds == sorted(dds) and dds[-1] <= 0.0
    assert len(mc.bands) == len(returns) + 1 and (mc.bands["p5"] <= mc.bands["p95"]).all()
    # same seed, same answer
    assert block_bootstrap(returns, 1000.0, 1000, seed=5).final_equity == mc.final_equity


def test_flat_curve_bootstraps_to_itself():
    mc = block_bootstrap(np.zeros(50), 500.0, n_paths=1000)
    assert mc.block_length == 1 and mc.final_equity[5] == mc.final_equity[95] == 500.0
    assert mc.prob_loss == 0.0


def test_max_drawdown():
    assert max_drawdown(np.array([100.0, 120.0, 90.0, 130.0])) == pytest.approx(90 / 120 - 1)


def test_hurst_separates_trend_random_and_mean_reversion():
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0, 1, 5000))
    assert 0.4 < hurst_exponent(walk) < 0.6
    trend = np.cumsum(np.cumsum(rng.normal(0, 1, 5000)) * 0.01 + rng.normal(0, 0.01, 5000))
    assert hurst_exponent(trend) > 0.8
    ou = np.zeros(5000)
    for t in range(1, 5000):
        ou[t] = 0.5 * ou[t - 1] + rng.normal()
    assert hurst_exponent(ou) < 0.3


def test_regime_labels_use_only_the_previous_window():
    rng = np.random.default_rng(1)
    n = 240 * 8
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    equity = pd.DataFrame({"equity": 1000 + np.cumsum(rng.normal(0, 1, n)), "close": close}, index=idx)
    base = regime_table(equity, 240)
    changed = equity.copy()
    changed.iloc[240 * 5:, changed.columns.get_loc("close")] *= np.exp(rng.normal(0, 0.05, n - 240 * 5))
    other = regime_table(changed, 240)
    # windows starting at or before bar 5·240 are labelled from data before the change
    cols = ["hurst_prev", "vol_prev", "trend_regime"]
    pd.testing.assert_frame_equal(base.loc[:3, cols], other.loc[:3, cols])
    assert not base[cols].equals(other[cols])


def test_sweep_covers_fees_slippage_borrow_leverage_and_kelly():
    scenario = load_scenario("scenarios/aave_wbnb_3x.toml")
    names = {name for name, _, _ in sweep_variants(scenario)}
    assert names == {"fees", "slippage_bps", "borrow_stress", "max_leverage", "kelly_fraction"}
    variants = dict(((n, v), s) for n, v, s in sweep_variants(scenario))
    assert variants[("borrow_stress", 5.0)].leverage.stress_multiplier == 5.0


def test_the_unperturbed_sweep_run_reproduces_the_main_run_trade_for_trade(registry, small_scenario, tmp_path):
    # The sweep once ran every variant on a copied pipeline whose features froze at warm-up: 0 trades
    # where the main run traded. Its "base" row must be the main run itself.
    scenario = without_edge_gate(small_scenario)  # the main run must trade for the comparison to mean anything
    prepared = prepare(scenario, registry)
    days = scenario.robustness.sweep_days
    assert sweep_split(prepared.split, days) == prepared.split  # the sweep window is the whole backtest
    train_model(prepared, registry, tmp_path / "model")
    main, artifact = backtest(prepared, registry, tmp_path / "model")
    name, _, _, base = next(sweep_runs(prepared, registry, artifact, days))
    assert name == "base"
    trades = main.record.trades_frame()
    assert len(trades) >= 5
    pd.testing.assert_frame_equal(base.record.trades_frame(), trades)
    pd.testing.assert_frame_equal(base.record.fills_frame(), main.record.fills_frame())
    assert [p for _, p in base.predictions] == [p for _, p in main.predictions]
