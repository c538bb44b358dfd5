"""Property tests (hypothesis): every built-in feature plugin is causal and stream == batch on
arbitrary generated markets, and the checker always catches a one-bar peek."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbml.data.frames import InstrumentData
from lbml.features.check import FeatureInputs, check_features
from lbml.features.pipeline import FeaturePipeline
from lbml.features.reference import builtin_feature_plugins
from lbml.plugins import load_registry

from .leaky.leaky_peek import LeakyPeek

# Shorter windows than the defaults so that ~300 generated bars get past every warm-up.
SMALL = {
    "lagged": {"return_windows": (1, 5, 15, 60)},
    "order_flow": {"vpin_buckets": 10, "sizing_window": 20},
    "funding": {"settle_interval_bars": 60},
}
BUILTINS = [cls.name for cls in builtin_feature_plugins(load_registry())]
NS_MIN = 60_000_000_000


@st.composite
def markets(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(260, 360))
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC").value + draw(st.integers(0, 1439)) * NS_MIN
    ts = start + NS_MIN * np.arange(1, n + 1)
    ts = ts + NS_MIN * np.cumsum(rng.random(n) < 0.05)  # a few gaps in the bar series
    index = pd.DatetimeIndex(ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC")
    price = draw(st.sampled_from([0.0001, 1.0, 600.0, 60_000.0]))
    vol = draw(st.floats(1e-4, 2e-2))
    close = price * np.exp(np.cumsum(rng.standard_t(4, n) * vol))
    open_ = np.concatenate(([price], close[:-1])) * np.exp(rng.normal(0, vol / 4, n))
    spread = np.abs(rng.normal(0, vol, n))
    high = np.maximum(open_, close) * np.exp(spread)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol, n)))
    volume = rng.lognormal(0, 1, n) * draw(st.sampled_from([0.01, 1.0, 1e4]))
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    if draw(st.booleans()):
        bars["taker_buy_volume"] = volume * rng.random(n)
    # Quotes at random instants (some exactly on a bar close), bid < ask.
    k = int(n * draw(st.floats(0.5, 3.0)))
    q_ts = np.sort(rng.integers(ts[0] - NS_MIN, ts[-1], k))
    q_ts[: k // 10] = rng.choice(ts, k // 10)
    q_ts[0] = ts[0] - 1  # quotes start before the first bar closes (the quotes plugin's warm-up is 1)
    q_ts = np.sort(q_ts)
    mid = np.interp(q_ts, ts, close)
    half = mid * rng.uniform(1e-5, 1e-3, k)
    quotes = pd.DataFrame(
        {"bid": mid - half, "ask": mid + half, "bid_size": rng.lognormal(0, 1, k), "ask_size": rng.lognormal(0, 1, k)},
        index=pd.DatetimeIndex(q_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"),
    )
    keep = rng.random(n) > 0.1  # the reference misses some bars, but it has started before the traded series
    keep[0] = True
    ref_close = 50_000 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    ref = pd.DataFrame(
        {"open": ref_close, "high": ref_close * 1.001, "low": ref_close * 0.999, "close": ref_close, "volume": 1.0},
        index=index,
    ).loc[keep]
    f_ts = ts[::60]
    funding = pd.DataFrame(
        {"rate": rng.normal(1e-4, 1e-4, len(f_ts))},
        index=pd.DatetimeIndex(f_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"),
    )
    m = int(n * draw(st.floats(0.2, 2.0)))
    d_ts = np.sort(np.concatenate(([ts[0] - 1], rng.integers(ts[0], ts[-1], m), rng.choice(ts, m // 10))))
    depth = pd.DataFrame(
        {"bid_depth": rng.lognormal(2, 1, len(d_ts)), "ask_depth": rng.lognormal(2, 1, len(d_ts))},
        index=pd.DatetimeIndex(d_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"),
    )
    data = InstrumentData(symbol="TESTUSDT", bars=bars, quotes=quotes, depth=depth)
    cuts = draw(st.lists(st.integers(0, n - 2), min_size=2, max_size=4, unique=True))
    return FeatureInputs(data, bars, ref, funding), cuts


def _make(name):
    registry = load_registry()
    return lambda: FeaturePipeline([registry.feature(name)(**SMALL.get(name, {}))])


@pytest.mark.parametrize("name", BUILTINS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market=markets())
def test_every_builtin_plugin_is_causal_and_streams_like_the_batch(name, market):
    inputs, cuts = market
    fit_end = inputs.bars.index[int(len(inputs.bars) * 0.6)]
    report = check_features(_make(name), inputs, fit_end, cuts=cuts)
    for r in report.results:
        assert r.causal, f"{r.name} changed before a cut at {cuts}"
        assert r.parity_ok, f"{r.name}: stream vs batch rel diff {r.parity_max_rel}"
        assert r.nonfinite_after_warmup == 0, f"{r.name}: non-finite after warm-up {r.warmup_declared}"


@settings(max_examples=10, deadline=None)
@given(market=markets(), where=st.floats(0.0, 1.0))
def test_the_checker_always_catches_a_one_bar_peek(market, where):
    inputs, _ = market
    fit_rows = int(len(inputs.bars) * 0.6)
    cut = int(where * (fit_rows - 2))  # any cut inside the training window
    report = check_features(lambda: FeaturePipeline([LeakyPeek()]), inputs, inputs.bars.index[fit_rows], cuts=[cut])
    assert not report.results[0].causal
    assert not report.ok
