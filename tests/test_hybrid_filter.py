"""HybridFilter: technical filters pick the side, the model confirms and Kelly-sizes it, and without a
healthy model the filter-only rule trades (counted), in a backtest and in a paper session."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import talib

from lbml.live.report import write_report
from lbml.live.session import PaperOptions, run_paper
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model
from lbml.workflows.run import backtest
from strategies.entry_filters import EntryFilters
from strategies.hybrid_filter import HybridFilterConfig

from .conftest import without_calibration, without_edge_gate

pytestmark = pytest.mark.timeout(400)


def _filters(**changes):
    fields = dict(filters=("trend", "rsi", "volatility", "volume"), trend_fast=5, trend_slow=20, rsi_period=14,
                  rsi_long=(50.0, 80.0), rsi_short=(20.0, 50.0), vol_fast=10, vol_slow=40, vol_ratio=(0.5, 2.0),
                  volume_window=20, volume_ratio=1.0)
    return EntryFilters(SimpleNamespace(**(fields | changes)))


def test_rsi_is_wilders_as_talib_computes_it():
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 300)))
    f = _filters()
    ours = []
    for c in close:
        f.update(float(c), 1.0)
        ours.append(f.rsi())
    np.testing.assert_allclose(np.array(ours), talib.RSI(close, timeperiod=14), rtol=1e-9, equal_nan=True)


def test_every_enabled_filter_must_allow_the_side():
    f = _filters(rsi_long=(50.0, 100.0))
    rising = 100 * np.exp(np.linspace(0, 0.05, 60) + 0.0005 * np.sin(np.arange(60)))  # up, gently noisy
    for c in rising:
        f.update(float(c), 10.0)
    allowed = f.allowed()
    assert allowed["trend"] == {1} and 1 in allowed["rsi"] and allowed["volatility"] == {1, -1}
    assert allowed["volume"] == {1, -1} and f.side() == 1
    f.update(float(rising[-1] * 1.0002), 1.0)  # a thin bar: the volume filter disagrees
    assert f.allowed()["volume"] == set() and f.side() == 0
    with pytest.raises(ValueError, match="enable trend or rsi"):
        _filters(filters=("volume",))


def test_config_refuses_inconsistent_filter_settings():
    from lbml.nautilus.model import BarType, InstrumentId

    iid = InstrumentId.from_str("BNBUSDT.BINANCE")
    bar_type = BarType.from_str("BNBUSDT.BINANCE-1-MINUTE-LAST-EXTERNAL")
    with pytest.raises(ValueError, match="trend_fast must be >= 1 and below trend_slow"):
        HybridFilterConfig(instrument_id=iid, bar_type=bar_type, trend_fast=50, trend_slow=20)
    with pytest.raises(ValueError, match="rsi_long must be a"):
        HybridFilterConfig(instrument_id=iid, bar_type=bar_type, rsi_long=(70.0, 50.0))


@pytest.mark.parametrize(("params", "message"), [
    ({"filtrs": ["trend"]}, "strategy.params.filtrs: not a field of HybridFilterConfig"),
    ({"filters": ["volume"]}, "filters must be among trend, rsi, volatility, volume and include trend or rsi"),
    ({"vol_fast": 500}, "vol_fast must be >= 2 and below vol_slow"),
])
def test_strategy_params_are_checked_when_the_scenario_loads(params, message):
    from lbml.engine.backtest import check_strategy_params
    from lbml.errors import ConfigError

    scenario = load_scenario("scenarios/hybrid_filter.toml")
    check_strategy_params(scenario, "hybrid_filter.toml")
    bad = scenario.model_copy(update={"strategy": scenario.strategy.model_copy(
        update={"params": scenario.strategy.params | params})})
    with pytest.raises(ConfigError, match=f"^hybrid_filter.toml: .*{message}"):
        check_strategy_params(bad, "hybrid_filter.toml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The shipped hybrid scenario on 3 days, with filter windows short enough for short sessions."""
    scenario = without_calibration(without_edge_gate(load_scenario("scenarios/hybrid_filter.toml").with_data(days=3)))
    params = scenario.strategy.params | {"trend_slow": 30, "vol_slow": 60, "vol_fast": 15, "volume_window": 20}
    scenario = scenario.model_copy(update={"strategy": scenario.strategy.model_copy(update={"params": params})})
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model = tmp_path_factory.mktemp("hybrid") / "model"
    train_model(prepared, registry, model)
    return scenario, registry, prepared, model


def test_backtest_enters_only_where_filters_and_model_agree(trained):
    scenario, registry, prepared, model = trained
    result, _ = backtest(prepared, registry, model)
    report = result.strategy_report
    # each bar's prediction reached the strategy before its bar: never missing or late; a run of
    # `frozen_after` identical probabilities (a small tree model on quiet bars) counts as degraded
    assert report["bars_model_healthy"] + report.get("bars_model_degraded", 0) == result.n_predictions > 1000
    assert report["bars_model_healthy"] > 0.9 * result.n_predictions
    assert report.get("entries_fallback", 0) == report.get("entries_fallback_degraded", 0)
    assert report["entries_model"] >= 1 and report["filters_agree"] >= report["entries_model"] + report.get("model_vetoes", 0)
    assert len(result.decisions) == report["entries_model"]  # each model entry Kelly-sized by lbml.sizing.decide
    assert all(0 < abs(d.exposure) <= 3.0 * 0.5 + 1e-12 and d.cost is not None for _, d in result.decisions)


def test_paper_session_falls_back_to_the_filter_rule_when_the_model_is_degraded(trained, tmp_path):
    scenario, registry, _, model = trained
    healthy = run_paper(scenario, registry, tmp_path / "healthy", PaperOptions(speed=1e9, bars=150, console=False),
                        model_dir=model)
    assert healthy["strategy_report"]["bars_model_healthy"] == healthy["bars"] == 150
    assert "entries_fallback" not in healthy["strategy_report"]
    # A model that never answers within its budget: the guard withholds every prediction.
    degraded = run_paper(scenario, registry, tmp_path / "degraded",
                         PaperOptions(speed=1e9, bars=150, console=False, model_budget_s=1e-9), model_dir=model)
    report = degraded["strategy_report"]
    assert degraded["withheld_predictions"] == 150 and report["bars_model_missing"] == 150
    assert report["entries_fallback"] == report["entries_fallback_missing"] >= 1
    assert "entries_model" not in report and degraded["fills"] >= 1
    _, metrics = write_report(tmp_path / "degraded")
    assert metrics["strategy_report"] == report
    assert math.isfinite(metrics["final_equity"])
