"""The compiled feature kernels equal the Python plugins with ``==``, feature by feature.

The Python plugins are the reference (``compiled=False`` runs every plugin in Python); the
default pipeline runs the built-in plugins with a kernel in one native call per bar. Compared on
the synthetic market with every input (with and without taker-buy volume, so both signed-volume
paths of ``order_flow`` run), with non-default parameters, on real 1-minute klines (the May 2021
crash and a month of Bybit perpetuals), event by event in engine order, across deep copies,
pickles and refits, and with a third-party plugin alongside. Without a C compiler the pipeline
runs in Python and says so in one log line.
"""

import copy
import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_features import FULL_SET, make_inputs
from lbml.data.frames import InstrumentData
from lbml.features import native
from lbml.features.base import BarEvent, FeatureInput, FeaturePlugin
from lbml.features.pipeline import FeaturePipeline, _replays_natively, compute_features
from lbml.plugins import load_registry

from .conftest import shared_file
from .test_features_replay import engine_events, feed

PORTED = ("technical", "volatility", "lagged", "cross_asset", "order_flow", "core", "quotes", "depth", "funding")
BARS_ONLY = ("technical", "volatility", "lagged", "cross_asset", "order_flow", "core")


@pytest.fixture(scope="module")
def market():
    return make_inputs(6_000, seed=11)


def pipelines(specs, fit_bars):
    """(Python reference, compiled) pipelines of the same plugins, fitted on ``fit_bars``."""
    registry = load_registry()
    out = []
    for compiled in (False, True):
        pipeline = FeaturePipeline([registry.feature(n)(**params) for n, params in specs], compiled=compiled)
        pipeline.fit(fit_bars)
        out.append(pipeline)
    return out


def assert_equal_per_feature(names, expected: np.ndarray, actual: np.ndarray) -> None:
    """Every column equal with ``==`` (NaN where the reference is NaN), named in the failure."""
    assert expected.shape == actual.shape
    bad = []
    for j, name in enumerate(names):
        e, a = expected[:, j], actual[:, j]
        same = (e == a) | (np.isnan(e) & np.isnan(a))
        if not same.all():
            row = int(np.flatnonzero(~same)[0])
            bad.append(f"{name}: row {row}: python {e[row]!r} compiled {a[row]!r} ({int((~same).sum())} rows)")
    assert not bad, "\n".join(bad)


def test_every_ported_plugin_runs_compiled_in_the_full_set(market):
    _, bars, _, _ = market
    python, compiled = pipelines([(n, {}) for n in (*FULL_SET, "core")], bars.iloc[:600])
    assert python.compiled_plugins == ()
    assert set(compiled.compiled_plugins) == set(PORTED)
    assert compiled.names == python.names


@pytest.mark.parametrize("taker", [True, False], ids=["taker_buy", "bulk_volume_classification"])
def test_synthetic_matrix_is_equal_feature_by_feature(market, taker):
    data, bars, ref, funding = market
    if not taker:
        bars = bars.drop(columns="taker_buy_volume")
    python, compiled = pipelines([(n, {}) for n in (*FULL_SET, "core")], bars.iloc[:600])
    assert _replays_natively(compiled)  # every plugin compiled: the whole replay is one native call
    expected = compute_features(python, data, bars, ref, funding).to_numpy()
    actual = compute_features(compiled, data, bars, ref, funding).to_numpy()
    assert np.isfinite(expected[-50:]).all()  # every feature is past its warm-up
    assert_equal_per_feature(python.names, expected, actual)


def test_non_default_parameters_are_equal(market):
    data, bars, ref, funding = market
    specs = [
        ("core", {"return_lags": (2, 7, 1), "vol_window": 9, "ema_period": 5, "volume_window": 11}),
        ("technical", {"ema_periods": (3, 8, 30), "rsi_period": 5, "macd_fast": 4, "macd_slow": 9,
                       "macd_signal": 3, "bb_period": 7, "bb_k": 1.5}),
        ("volatility", {"window": 7, "drawdown_window": 13, "garch_dist": "normal"}),
        ("lagged", {"return_windows": (3, 1, 30), "log_return_windows": (2, 9), "std_windows": (4, 17, 2),
                    "volume_window": 6}),
        # small VPIN buckets: several buckets filled by one bar
        ("order_flow", {"flow_window": 1, "bvc_window": 5, "vpin_buckets": 7, "vpin_bucket_bars": 0.3,
                        "sizing_window": 3, "illiquidity_window": 4}),
        ("cross_asset", {"window": 5, "lags": (3, 1, 6)}),
        ("depth", {"volume_window": 7}),
        ("quotes", {}),
        ("funding", {"settle_interval_bars": 10}),
    ]
    python, compiled = pipelines(specs, bars.iloc[:600])
    assert set(compiled.compiled_plugins) == set(PORTED)
    expected = compute_features(python, data, bars, ref, funding).to_numpy()
    actual = compute_features(compiled, data, bars, ref, funding).to_numpy()
    assert_equal_per_feature(python.names, expected, actual)


def _klines(path) -> pd.DataFrame:
    df = pd.read_csv(path)
    stamp = df.pop(df.columns[0])
    opened = (
        pd.to_datetime(stamp, unit="ms", utc=True) if np.issubdtype(stamp.dtype, np.number)
        else pd.to_datetime(stamp, utc=True)
    )
    df.index = pd.DatetimeIndex(opened + pd.Timedelta(minutes=1), name="ts")  # features index by close time
    return df[["open", "high", "low", "close", "volume"]].astype(np.float64)


@pytest.mark.parametrize(
    "traded, reference",
    [
        (("binance_spot_2021-04-02_to_2021-05-14", "BNBUSDT-1m.csv.gz"),
         ("binance_spot_2021-04-02_to_2021-05-14", "BTCUSDT-1m.csv.gz")),
        (("bybit_linear_2025-05-30_to_2025-06-29", "ETHUSDT_1m.csv"),
         ("bybit_linear_2025-05-30_to_2025-06-29", "BTCUSDT_1m.csv")),
    ],
    ids=["binance_2021_crash", "bybit_2025"],
)
def test_real_klines_are_equal_feature_by_feature(traded, reference):
    bars = _klines(shared_file("klines_1m", *traded))
    ref = _klines(shared_file("klines_1m", *reference))
    assert len(bars) > 40_000
    python, compiled = pipelines([(n, {}) for n in BARS_ONLY], bars.iloc[:5_000])
    data = InstrumentData(symbol="BNBUSDT", bars=bars)
    expected = compute_features(python, data, bars, ref, None).to_numpy()
    actual = compute_features(compiled, data, bars, ref, None).to_numpy()
    assert np.isfinite(expected[-50:]).all()
    assert_equal_per_feature(python.names, expected, actual)


def test_event_by_event_streaming_copies_and_pickles_match_the_reference(market):
    data, bars, ref, funding = market
    bars = bars.iloc[:3_000]
    python, compiled = pipelines([(n, {}) for n in (*FULL_SET, "core")], bars.iloc[:600])
    events = engine_events(data, bars, ref.iloc[:3_000], funding)
    python.reset()
    expected = feed(python, events)
    compiled.reset()
    cut = len(events) // 2
    head = feed(compiled, events[:cut])
    clone = copy.deepcopy(compiled)
    shipped = pickle.loads(pickle.dumps(compiled))  # as a Dask worker receives it (never on disk)
    rest = feed(compiled, events[cut:])
    assert_equal_per_feature(python.names, expected, np.vstack([head, rest]))
    # the copies carry on from the cut exactly as the original did, independently of it
    assert_equal_per_feature(python.names, rest, feed(clone, events[cut:]))
    assert_equal_per_feature(python.names, rest, feed(shipped, events[cut:]))


def test_refitting_a_plugin_restarts_it_as_the_python_plugin_does(market):
    data, bars, ref, funding = market
    python, compiled = pipelines([(n, {}) for n in ("volatility", "lagged")], bars.iloc[:600])
    events = [BarEvent(int(t), *row) for t, row in zip(bars.index.asi8, bars.to_numpy().tolist())]
    rows = {}
    for name, pipeline in (("python", python), ("compiled", compiled)):
        pipeline.reset()
        out = [pipeline.update(bar).copy() for bar in events[:1_000]]
        pipeline.plugins[0].fit(bars.iloc[1_000:2_000])  # a plugin refitted directly, mid-stream
        out += [pipeline.update(bar).copy() for bar in events[1_000:1_500]]
        rows[name] = np.array(out)
    assert_equal_per_feature(python.names, rows["python"], rows["compiled"])
    unfitted = FeaturePipeline([load_registry().feature("volatility")()])
    assert unfitted.compiled_plugins == ("volatility",)
    with pytest.raises(Exception, match="GARCH is not fitted"):
        unfitted.update(events[0])


class _Spread(FeaturePlugin):
    """A third-party pure-Python plugin: high-low range over close, and the bar's quote count."""

    name = "test_spread"
    inputs = frozenset({FeatureInput.BARS, FeatureInput.QUOTES})

    def output_names(self):
        return ("test_hl_range", "test_quotes_per_bar")

    def warmup_bars(self):
        return 1

    def reset(self):
        self.n = 0
        self.quotes = 0

    def on_quote(self, ts, bid, ask, bid_size, ask_size):
        self.quotes += 1

    def update(self, bar):
        self.n += 1
        quotes, self.quotes = self.quotes, 0
        return ((bar.high - bar.low) / bar.close, float(quotes))


def test_third_party_and_subclassed_plugins_run_in_python_alongside(market):
    data, bars, ref, funding = market
    registry = load_registry()
    lagged = registry.feature("lagged")

    class MyLagged(lagged):  # a subclass may override update: never swapped for the kernel
        name = "my_lagged"

    def make(compiled):
        plugins = [registry.feature("technical")(), _Spread(), MyLagged(), registry.feature("quotes")(),
                   registry.feature("order_flow")()]
        return FeaturePipeline(plugins, compiled=compiled)

    python, compiled = make(False), make(True)
    assert compiled.compiled_plugins == ("technical", "quotes", "order_flow")
    expected = compute_features(python, data, bars, ref, funding).to_numpy()
    actual = compute_features(compiled, data, bars, ref, funding).to_numpy()
    assert_equal_per_feature(python.names, expected, actual)
    assert compiled.plugins[1].n == len(bars)  # the Python plugin saw every bar and every quote
    assert actual[:, python.names.index("test_quotes_per_bar")].sum() == len(data.quotes)


def test_without_a_compiler_every_plugin_runs_in_python_with_one_log_line(market, monkeypatch, tmp_path, caplog):
    data, bars, ref, funding = market
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached: the kernels must be built
    monkeypatch.setenv("CC", "lbml-test-no-such-compiler")
    registry = load_registry()
    with caplog.at_level(logging.WARNING, logger="lbml.features.native"):
        first = FeaturePipeline([registry.feature(n)() for n in FULL_SET])
        second = FeaturePipeline([registry.feature(n)() for n in FULL_SET])
    assert first.compiled_plugins == second.compiled_plugins == ()
    lines = [r.getMessage() for r in caplog.records if r.name == "lbml.features.native"]
    assert len(lines) == 1, lines
    assert "compiled features unavailable" in lines[0] and "lbml-test-no-such-compiler" in lines[0]
    assert "Python" in lines[0]
    # the fallback is the reference itself
    first.fit(bars.iloc[:600])
    reference = FeaturePipeline([registry.feature(n)() for n in FULL_SET], compiled=False)
    reference.fit(bars.iloc[:600])
    head = bars.iloc[:2_000]
    assert_equal_per_feature(
        first.names,
        compute_features(reference, data, head, ref, funding).to_numpy(),
        compute_features(first, data, head, ref, funding).to_numpy(),
    )
    with pytest.raises(native.CompileUnavailable, match="not found"):
        native.build_library(tmp_path / "other", compiler="lbml-test-no-such-compiler")


@pytest.mark.slow
def test_a_backtest_is_identical_with_compiled_and_python_features(registry, small_scenario, tmp_path, monkeypatch,
                                                                     caplog):
    from lbml.workflows.run import run_scenario

    from .conftest import without_edge_gate

    scenario = without_edge_gate(small_scenario)  # trades on 4 days: fills and equity to compare
    with caplog.at_level(logging.WARNING, logger="lbml.features.native"):
        compiled_dir, compiled_metrics = run_scenario(scenario, registry, tmp_path / "compiled")
        assert not [r for r in caplog.records if r.name == "lbml.features.native"]
        # The same trained model, backtested again with every feature plugin in Python: no C
        # compiler and nothing cached (the compiled trees still build with ``cc``).
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("CC", "lbml-test-no-such-compiler")
        python_dir, python_metrics = run_scenario(scenario, registry, tmp_path / "python",
                                                  model_dir=compiled_dir / "model")
    assert [r.getMessage() for r in caplog.records if r.name == "lbml.features.native"][0].startswith(
        "compiled features unavailable")
    assert compiled_metrics["n_trades"] > 0
    for name in ("fills.csv", "equity.csv", "trades.csv", "predictions.csv"):
        assert (python_dir / name).read_bytes() == (compiled_dir / name).read_bytes(), name
    for key in ("n_trades", "final_equity", "total_return", "n_bars"):
        assert python_metrics[key] == compiled_metrics[key], key


def _adversarial_market(n: int, seed: int):
    """Inputs that walk every branch: prices on a coarse tick grid (flat windows, equal highs and
    closes), zero-volume bars, missing/negative/oversized taker-buy volume, reference bars missing
    or closing at the traded bar's own timestamp, events stamped exactly at bar closes."""
    rng = np.random.default_rng(seed)
    ns_min = 60_000_000_000
    ts = pd.Timestamp("2024-03-01", tz="UTC").value + ns_min * np.arange(1, n + 1)
    index = pd.DatetimeIndex(ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC")
    steps = rng.choice([-1, 0, 0, 0, 1], size=n) * (rng.random(n) < 0.7)
    steps[200:320] = 0  # a long flat stretch: zero variances, flat bands, RSI without changes
    close = 100.0 + 0.5 * np.cumsum(steps)
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) + 0.5 * (rng.random(n) < 0.3)
    low = np.minimum(open_, close) - 0.5 * (rng.random(n) < 0.3)
    volume = np.round(rng.lognormal(0, 1.0, n), 1) * (rng.random(n) > 0.1)  # ~10 % zero-volume bars
    taker = volume * rng.choice([0.0, 0.3, 0.5, 1.0, 1.2, -0.1], size=n)
    taker[rng.random(n) < 0.3] = np.nan  # bulk volume classification on these bars
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume,
                         "taker_buy_volume": taker}, index=index)
    ref_close = 50_000.0 + 25.0 * np.cumsum(rng.choice([-1, 0, 1], size=n))
    keep = rng.random(n) > 0.1  # missing reference bars
    ref = pd.DataFrame({"open": ref_close, "high": ref_close + 25, "low": ref_close - 25, "close": ref_close,
                        "volume": 1.0}, index=index)[keep]
    q_ts = np.sort(np.concatenate([np.repeat(ts, 2) - rng.integers(0, ns_min, 2 * n), ts[::7]]))  # some at the close
    mid = 100.0 + 0.5 * np.round(rng.normal(0, 4, len(q_ts)))
    half = 0.05 * rng.integers(1, 3, len(q_ts))
    quotes = pd.DataFrame({"bid": mid - half, "ask": mid + half, "bid_size": rng.integers(0, 5, len(q_ts)) * 1.0,
                           "ask_size": rng.integers(0, 5, len(q_ts)) * 1.0},
                          index=pd.DatetimeIndex(q_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"))
    d_ts = np.sort(np.concatenate([ts - ns_min // 2, ts[::5]]))  # some snapshots exactly at the close
    depth = pd.DataFrame({"bid_depth": rng.integers(0, 100, len(d_ts)) * 1.0,
                          "ask_depth": rng.integers(0, 100, len(d_ts)) * 1.0},
                         index=pd.DatetimeIndex(d_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"))
    f_ts = ts[::97]  # settlements exactly at bar closes
    funding = pd.DataFrame({"rate": rng.normal(1e-4, 1e-4, len(f_ts))},
                           index=pd.DatetimeIndex(f_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"))
    data = InstrumentData(symbol="BNBUSDT", bars=bars, quotes=quotes, depth=depth)
    return data, bars, ref, funding


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_adversarial_inputs_are_equal_feature_by_feature(seed):
    data, bars, ref, funding = _adversarial_market(3_000, seed)
    registry = load_registry()
    # small VPIN buckets on top of the defaults: buckets closed, and several filled, within one bar
    small_buckets = {"vpin_buckets": 5, "vpin_bucket_bars": 0.5, "sizing_window": 3, "flow_window": 2}
    cases = [
        pipelines([(n, {}) for n in (*FULL_SET, "core")], bars.iloc[:1_000]),
        [FeaturePipeline([registry.feature("order_flow")(**small_buckets)], compiled=c) for c in (False, True)],
    ]
    for python, compiled in cases:
        assert len(compiled.compiled_plugins) == len(compiled.plugins)
        expected = compute_features(python, data, bars, ref, funding).to_numpy()
        actual = compute_features(compiled, data, bars, ref, funding).to_numpy()
        assert_equal_per_feature(python.names, expected, actual)
        # and event by event, in engine order
        python.reset()
        compiled.reset()
        events = engine_events(data, bars.iloc[:1_500], ref.loc[: bars.index[1_499]], funding)
        assert_equal_per_feature(python.names, feed(python, events), feed(compiled, events))
    # the inputs reach the branches they are built for
    full = pd.DataFrame(compute_features(cases[0][0], data, bars, ref, funding))
    assert (full["tech_bb_position"] == 0.5).any()  # a flat band
    assert (bars["volume"] == 0).any() and bars["taker_buy_volume"].isna().any()
    assert np.isfinite(full["mi_vpin"].iloc[-100:]).all()


def test_a_plugin_whose_version_moved_on_runs_in_python(monkeypatch):
    lagged = load_registry().feature("lagged")
    assert FeaturePipeline([lagged()]).compiled_plugins == ("lagged",)
    monkeypatch.setattr(lagged, "version", "2")  # as if its outputs had changed since the kernel was written
    assert FeaturePipeline([lagged()]).compiled_plugins == ()
