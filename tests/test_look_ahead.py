"""The look-ahead check's blind spots (fit-time state, plugins reading files) and its enforcement."""

import math

import numpy as np
import pandas as pd
import pytest

from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.features.check import FeatureInputs, check_features
from lbml.features.pipeline import FeaturePipeline, bar_events
from lbml.plugins import load_registry

from .leaky.leaky_file import LeakyFile
from .leaky.leaky_fit import LeakyFitDrift, LeakyTable


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticMarketConfig(days=2, seed=5))


@pytest.fixture(scope="module")
def inputs(market):
    bnb = market["BNBUSDT"]
    return FeatureInputs(bnb, bnb.bars, market["BTCUSDT"].bars, market.funding["BNBUSDT"])


def _with_technical(plugin):
    return lambda: FeaturePipeline([plugin(), load_registry().feature("technical")()])


def _only_leak(report, feature):
    by_name = {r.name: r for r in report.results}
    assert not by_name[feature].causal and not by_name[feature].ok, report.to_table()
    assert all(r.ok for r in report.results if r.name != feature), report.to_table()


def test_a_fit_that_learns_from_bars_after_its_window_is_caught(inputs):
    fit_row = 1500
    report = check_features(_with_technical(LeakyFitDrift), inputs, inputs.bars.index[fit_row], cuts=[fit_row + 200])
    _only_leak(report, "leaky_excess_return")
    leak = report.results[0]
    assert leak.parity_ok  # declared state: batch and stream agree, only perturbation finds it
    assert "fitted state" in leak.leak and leak.leak_bar == inputs.bars.index[1]  # first bar with a value


def test_a_per_bar_table_in_the_fitted_state_is_caught(inputs):
    fit_row = 1500
    report = check_features(_with_technical(LeakyTable), inputs, inputs.bars.index[fit_row], cuts=[700, 2000])
    _only_leak(report, "leaky_table_next_return")
    leak = report.results[0]
    assert leak.parity_ok
    # Fitted on the first 3/4 of the window, the table lacks the next close of its last bar.
    assert "grows with the window" in leak.leak
    assert leak.leak_bar == inputs.bars.index[(fit_row + 1) * 3 // 4 - 1]


def write_klines_csv(bars: pd.DataFrame, path) -> None:
    """Binance kline CSV (no header, times in ms) of canonical bars indexed by close time."""
    close_ms = bars.index.asi8 // 1_000_000
    open_ms = close_ms - 60_000
    frame = pd.DataFrame({
        0: open_ms, 1: bars["open"], 2: bars["high"], 3: bars["low"], 4: bars["close"], 5: bars["volume"],
        6: close_ms - 1, 7: bars["volume"] * bars["close"], 8: 10, 9: bars["taker_buy_volume"],
        10: bars["taker_buy_volume"] * bars["close"], 11: 0,
    })
    frame.to_csv(path, header=False, index=False)


def test_a_plugin_reading_its_data_file_is_caught(inputs, tmp_path):
    path = tmp_path / "BNBUSDT-1m.csv"
    write_klines_csv(inputs.bars, path)
    fit_row = 1500
    make = lambda: FeaturePipeline([LeakyFile(path=str(path)), load_registry().feature("technical")()])  # noqa: E731
    report = check_features(make, inputs, inputs.bars.index[fit_row], cuts=[700, 2000])
    _only_leak(report, "leaky_file_next_return")
    leak = report.results[0]
    assert leak.parity_ok
    # The values really are next-bar returns read from the file: a leak, not a false alarm.
    close = inputs.bars["close"].to_numpy()
    first = LeakyFile(path=str(path)).update(bar_events(inputs.bars)[0])
    assert first[0] == pytest.approx(math.log(close[1] / close[0]))
    assert str(path) in leak.leak and "(in update)" in leak.leak
    assert leak.leak_bar == inputs.bars.index[0]


def test_the_builtin_plugins_pass_with_cuts_on_both_sides_of_the_fit_window(inputs):
    registry = load_registry()
    names = ("technical", "volatility", "lagged", "cross_asset", "funding", "order_flow", "quotes")
    make = lambda: FeaturePipeline([registry.feature(n)() for n in names])  # noqa: E731
    fit_row = 1500
    report = check_features(make, inputs, inputs.bars.index[fit_row], cuts=[400, fit_row - 1, fit_row + 300, 2700])
    assert report.ok, report.to_table()
    assert np.isfinite([r.parity_max_rel for r in report.results]).all()
