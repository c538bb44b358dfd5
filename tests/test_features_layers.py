"""The five-layer feature set: the checker, parity, causality, scale-freedom, schema and docs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.errors import PluginError
from lbml.features.check import FeatureInputs, check_features
from lbml.features.commands import read_feature_metadata
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.features.reference import render_reference
from lbml.plugins import load_registry

from .leaky.leaky_peek import LeakyPeek

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("technical", "volatility", "lagged", "cross_asset", "funding", "order_flow", "quotes", "depth")


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticMarketConfig(days=2, seed=11))


@pytest.fixture(scope="module")
def inputs(market):
    bnb = market["BNBUSDT"]
    return FeatureInputs(bnb, bnb.bars, market["BTCUSDT"].bars, market.funding["BNBUSDT"])


def _factory(names, **params):
    registry = load_registry()
    return lambda: FeaturePipeline([registry.feature(n)(**params.get(n, {})) for n in names])


def test_the_default_scenario_gets_every_layer_on_the_embedded_market(registry, small_scenario):
    from lbml.features.commands import scenario_features

    sf = scenario_features(small_scenario, registry)
    assert sf.unavailable == ()
    pipeline = sf.pipeline(registry)
    assert {p.name for p in pipeline.plugins} == set(LAYERS)
    layers = {
        "tech_": 10, "vol_": 6, "lag_": 13, "xa_": 5, "mi_": 8,  # lag_: time of day is a sin/cos pair
    }
    for prefix, count in layers.items():
        assert sum(n.startswith(prefix) for n in pipeline.names) == count, prefix


def test_check_passes_for_every_layer_on_the_embedded_market(inputs):
    fit_end = inputs.bars.index[1500]
    report = check_features(_factory(LAYERS), inputs, fit_end, n_cuts=5, seed=1)
    assert report.ok, report.to_table()
    assert len(report.results) == 42
    assert all(r.warmup_observed is not None and r.warmup_observed <= r.warmup_declared for r in report.results)


def test_the_checker_catches_a_one_bar_peek(inputs):
    fit_end = inputs.bars.index[1500]
    make = lambda: FeaturePipeline([LeakyPeek(), load_registry().feature("technical")()])  # noqa: E731
    report = check_features(make, inputs, fit_end, cuts=[700])
    by_name = {r.name: r for r in report.results}
    leaky = by_name["leaky_next_return"]
    assert not leaky.causal and not leaky.parity_ok and not leaky.ok
    assert not report.ok
    assert all(r.ok for r in report.results if r.plugin == "technical")
    assert "LEAK" in report.to_table()


def test_cli_features_check_fails_on_the_leaky_plugin(tmp_path):
    scenario = tmp_path / "leaky.toml"
    scenario.write_text(
        'name = "leaky"\n[data]\nsource = "synthetic"\ndays = 2\n'
        '[[features.plugins]]\nplugin = "technical"\n[[features.plugins]]\nplugin = "leaky_peek"\n'
    )
    env = {"LBML_PATHS__PLUGINS_DIR": str(ROOT / "tests" / "leaky"), "PATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "features", "check", str(scenario), "--cuts", "4"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert "leaky_next_return" in proc.stdout and "LEAK" in proc.stdout
    assert "FAILED for: leaky_next_return" in proc.stderr
    assert "tech_rsi_14" in proc.stdout


def test_funding_is_an_as_of_join_never_the_next_settlement(market):
    bnb = market["BNBUSDT"]
    funding = market.funding["BNBUSDT"]
    pipeline = _factory(["funding"])()
    values = compute_features(pipeline, bnb, bnb.bars, None, funding)["xa_funding_rate"]
    for ts, value in values.iloc[::97].items():
        known = funding.loc[funding.index < ts, "rate"]
        expected = known.iloc[-1] if len(known) else np.nan
        assert value == expected or (np.isnan(value) and np.isnan(expected)), ts


def test_features_are_scale_free(market, inputs):
    names = [n for n in LAYERS if n != "funding"]
    make = _factory(names)
    base = make()
    base.fit(inputs.bars.iloc[:1500])
    state = base.fitted_state()
    a = compute_features(base, inputs.data, inputs.bars, inputs.reference_bars)

    def scale(frame, cols, k):
        out = frame.copy()
        out[list(cols)] *= k
        return out

    from dataclasses import replace

    data = replace(inputs.data, quotes=scale(inputs.data.quotes, ("bid", "ask"), 100.0))
    scaled = make()
    scaled.load_fitted_state(state)
    b = compute_features(
        scaled, data, scale(inputs.bars, ("open", "high", "low", "close"), 100.0),
        scale(inputs.reference_bars, ("open", "high", "low", "close"), 0.01),
    )
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-7, atol=1e-10, equal_nan=True)


def test_garch_state_round_trips_and_unfitted_use_is_refused(inputs):
    registry = load_registry()
    vol = registry.feature("volatility")()
    with pytest.raises(PluginError, match="GARCH is not fitted"):
        FeaturePipeline([vol]).update(next(iter([_bar(inputs)])))
    vol.fit(inputs.bars.iloc[:1500])
    state = json.loads(json.dumps(vol.fitted_state()))
    assert set(state["garch"]) == {"mu", "omega", "alpha", "beta", "initial_variance", "scale"}
    assert isinstance(state["garch_fit"]["converged"], bool)
    assert 0 < state["garch"]["alpha"] + state["garch"]["beta"] < 1
    other = registry.feature("volatility")()
    other.load_fitted_state(state)
    a = compute_features(FeaturePipeline([vol]), inputs.data, inputs.bars)
    b = compute_features(FeaturePipeline([other]), inputs.data, inputs.bars)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(PluginError, match="malformed"):
        other.load_fitted_state({"garch": {"mu": 1.0}})


def _bar(inputs):
    from lbml.features.pipeline import bar_events

    return bar_events(inputs.bars.iloc[:1])[0]


def test_bad_parameters_are_refused_with_one_line():
    registry = load_registry()
    with pytest.raises(PluginError, match="'technical': parameters: macd_fast must be < macd_slow"):
        registry.feature("technical")(macd_fast=30, macd_slow=26)
    with pytest.raises(PluginError, match="parameter lags: unknown parameter"):
        registry.feature("lagged")(lags=(1,))


def test_cli_features_compute_writes_parquet_with_schema(tmp_path):
    out = tmp_path / "features.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "features", "compute", "scenarios/default.toml", "--days", "2", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(out)
    meta = read_feature_metadata(out)
    assert list(frame.columns) == meta["schema"]["names"] and len(frame.columns) == 42
    assert len(frame) == 2 * 1440 and isinstance(frame.index, pd.DatetimeIndex)
    assert {p["plugin"] for p in meta["schema"]["plugins"]} == set(LAYERS)
    assert all("version" in p and "params" in p for p in meta["schema"]["plugins"])
    assert len(meta["schema"]["hash"]) == 16 and "garch" in meta["fitted_state"]["volatility"]
    assert np.isfinite(frame.iloc[meta["warmup_bars"]:].to_numpy()).all()
    assert [p.name for p in tmp_path.iterdir()] == ["features.parquet"]


def test_cli_features_compute_refuses_a_missing_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "features", "compute", "scenarios/default.toml", "--days", "2",
         "--out", str(tmp_path / "nope" / "f.parquet")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("lbml: error: --out ") and line.endswith("does not exist") and "\n" not in line
    assert "Traceback" not in proc.stderr


def test_committed_feature_reference_is_up_to_date(registry):
    committed = (ROOT / "docs" / "FEATURES.md").read_text()
    assert committed == render_reference(registry), "run: lbml features docs --out docs/FEATURES.md"
    for plugin in LAYERS:
        assert f"## {plugin}" in committed
    assert "(undocumented)" not in committed
