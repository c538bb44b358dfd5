"""The look-ahead check's blind spots (fit-time state, plugins reading files) and its enforcement."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.features.check import FeatureInputs, check_features
from lbml.features.pipeline import FeaturePipeline, bar_events
from lbml.plugins import load_registry
from lbml.scenario import parse_scenario

from .leaky.leaky_file import LeakyFile
from .leaky.leaky_fit import LeakyFitDrift, LeakyTable

ROOT = Path(__file__).resolve().parents[1]


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
    plugin = LeakyFitDrift()
    plugin.fit(inputs.bars.loc[: inputs.bars.index[fit_row]])
    after = np.log(inputs.bars["close"].to_numpy()[fit_row + 1 :])  # the bars after the window
    assert plugin.fitted_state()["drift"] == pytest.approx(np.mean(np.diff(after)))  # it really leaks
    report = check_features(_with_technical(LeakyFitDrift), inputs, inputs.bars.index[fit_row], cuts=[fit_row + 200])
    _only_leak(report, "leaky_excess_return")
    leak = report.results[0]
    assert leak.parity_ok  # declared state: batch and stream agree, only perturbation finds it
    assert "fitted state" in leak.leak and leak.leak_bar == inputs.bars.index[1]  # first bar with a value


def test_a_per_bar_table_in_the_fitted_state_is_caught(inputs):
    fit_row = 1500
    plugin = LeakyTable()
    plugin.fit(inputs.bars.iloc[: fit_row + 1])
    close = inputs.bars["close"].to_numpy()
    assert plugin.update(bar_events(inputs.bars)[10])[0] == pytest.approx(math.log(close[11] / close[10]))  # it leaks
    report = check_features(_with_technical(LeakyTable), inputs, inputs.bars.index[fit_row], cuts=[700, 2000])
    _only_leak(report, "leaky_table_next_return")
    leak = report.results[0]
    assert leak.parity_ok
    # Fitted on the first 3/4 of the window, the table lacks the next close of its last bar.
    assert "grows with the window" in leak.leak
    assert leak.leak_bar == inputs.bars.index[(fit_row + 1) * 3 // 4 - 1]


def test_random_cuts_fall_on_both_sides_of_the_fit_window(inputs):
    fit_end = inputs.bars.index[1500]
    for seed in range(3):  # whatever the draw, the fit-time leak and the update-time peek are both found
        report = check_features(_with_technical(LeakyFitDrift), inputs, fit_end, n_cuts=4, seed=seed)
        assert any(c < 1500 for c in report.cuts) and any(c >= 1500 for c in report.cuts)
        assert not report.results[0].causal
    everything = check_features(_with_technical(LeakyTable), inputs, inputs.bars.index[-1], n_cuts=4)
    assert all(c < len(inputs.bars) - 1 for c in everything.cuts)  # a window up to the last bar: no cut after it
    assert not everything.results[0].causal


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


# -- enforcement ------------------------------------------------------------------------------------
LEAKY_SCENARIO = (
    'name = "leaky"\n[data]\nsource = "synthetic"\ndays = 3\n'
    '[[features.plugins]]\nplugin = "technical"\n[[features.plugins]]\nplugin = "leaky_peek"\n'
)


def _lbml(tmp_path, *args):
    """Run ``lbml`` on the leaky scenario; ``SCENARIO`` in ``args`` stands for its path."""
    scenario = tmp_path / "leaky.toml"
    scenario.write_text(LEAKY_SCENARIO)
    env = {
        "LBML_PATHS__PLUGINS_DIR": str(ROOT / "tests" / "leaky"),
        "LBML_PATHS__RUNS_DIR": str(tmp_path / "runs"),
        "PATH": "",
    }
    argv = [str(scenario) if a == "SCENARIO" else str(a) for a in args]
    return subprocess.run(
        [sys.executable, "-m", "lbml", *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def _refusal(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    # demo draws a progress bar (carriage returns, then a cleared line) before the error
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "synthetic market:" not in line]
    assert len(lines) == 1, proc.stderr
    assert re.fullmatch(
        r"lbml: error: look-ahead: feature 'leaky_next_return' at bar \d{4}-\d\d-\d\d \d\d:\d\d changes when later "
        r"bars change \(plugin leaky_peek 1\); pass --allow-look-ahead to run anyway",
        lines[0],
    ), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ("train", "SCENARIO", "--out", "OUT"),
        ("paper", "SCENARIO", "--state", "OUT", "--bars", 3, "--speed", 1000, "--quiet"),
        ("walkforward", "SCENARIO", "--every-days", 1, "--train-days", 1, "--out", "OUT"),
        ("search", "SCENARIO", "--trials", 1, "--storage", "OUT"),
        ("demo", "--scenario", "SCENARIO"),
    ],
    ids=lambda command: command[0],
)
def test_every_command_that_trains_or_trades_refuses_a_leaky_feature_in_one_line(tmp_path, command):
    out = tmp_path / "out"
    proc = _lbml(tmp_path, *[out if a == "OUT" else a for a in command])
    _refusal(proc)
    assert not out.exists()  # no model, state folder, run folder or study was written
    assert not (tmp_path / "runs").exists() or not any(p.name != ".cache" for p in (tmp_path / "runs").iterdir())
    assert len(list((tmp_path / "runs" / ".cache" / "look_ahead").glob("*.json"))) == 2  # one verdict per plugin


def test_allow_look_ahead_runs_and_stamps_every_report(tmp_path):
    out = tmp_path / "run"
    proc = _lbml(tmp_path, "backtest", "SCENARIO", "--out", out, "--allow-look-ahead")
    assert proc.returncode == 0, proc.stderr
    check = json.loads((out / "metrics.json").read_text())["look_ahead_check"]
    assert check["status"] == "overridden"
    assert check["plugins"]["leaky_peek"]["status"] == "failed"
    assert check["plugins"]["technical"]["status"] == "passed"
    leak = check["plugins"]["leaky_peek"]["leaks"][0]
    assert leak["feature"] == "leaky_next_return" and leak["bar"] is not None
    assert leak["message"] in (out / "LOOK-AHEAD-OVERRIDDEN").read_text()
    assert json.loads((out / "metrics.json").read_text())["report_stamp"] == "LOOK-AHEAD-OVERRIDDEN"
    assert "*** LOOK-AHEAD CHECK OVERRIDDEN ***" in proc.stdout
    assert re.search(r"look-ahead check +OVERRIDDEN \(--allow-look-ahead\): " + re.escape(leak["message"]), proc.stdout)


def test_the_guard_caches_verdicts_per_plugin_version_params_and_data(tmp_path, small_scenario):
    from lbml.features.guard import LookAheadError, LookAheadPolicy, guard_look_ahead
    from lbml.workflows.prepare import prepare

    registry = load_registry(ROOT / "tests" / "leaky")
    policy = LookAheadPolicy(tmp_path / "cache")
    prepared = prepare(small_scenario, registry)
    check = lambda scenario: guard_look_ahead(  # noqa: E731
        scenario, prepared.market, prepared.split.train_end, registry, policy
    )
    first = check(small_scenario)
    assert first["status"] == "passed" and len(first["plugins"]) == 8  # the built-in layers pass
    again = check(small_scenario)
    assert again["status"] == "cached" and again["seconds"] < first["seconds"]
    raw = small_scenario.to_dict()
    raw["features"]["plugins"][0]["params"] = {"rsi_period": 10}
    changed = check(parse_scenario(raw, source="test"))
    assert changed["status"] == "passed"
    assert [name for name, v in changed["plugins"].items() if not v["cached"]] == ["technical"]
    # Other data: every plugin is checked again.
    other = prepare(small_scenario.with_data(seed=8), registry)
    fresh = guard_look_ahead(small_scenario, other.market, other.split.train_end, registry, policy)
    assert not any(v["cached"] for v in fresh["plugins"].values())
    # A cached failure refuses like a fresh one.
    raw["features"]["plugins"].append({"plugin": "leaky_table"})
    leaky = parse_scenario(raw, source="test")
    messages = []
    for _ in range(2):
        with pytest.raises(LookAheadError) as err:
            check(leaky)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "feature 'leaky_table_next_return' at bar " in messages[0] and "grows with the window" in messages[0]
