"""Every named indicator of the built-in plugins equals TA-Lib after the plugin's declared warm-up.

Issue #16 item 9: ``tech_rsi_14`` was an EMA-smoothed RSI (Wilder's RSI(7.5), up to ~20 points from
TA-Lib's RSI(14)), EMAs were seeded with the first close instead of TA-Lib's simple-mean seed, and
the ``atr`` volatility estimator was a simple mean of true ranges. Here each output is rebuilt from
TA-Lib's own functions (EMA, RSI, MACD, BBANDS, ROC, ROCR, STDDEV, SMA, SUM, MAXINDEX, CORREL, ATR)
and compared from bar ``warmup_bars()`` on — on the synthetic market and on real 1-minute klines.
"""

import math

import numpy as np
import pandas as pd
import pytest

from lbml.data.frames import InstrumentData
from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.research.labels import trailing_volatility
from lbml.plugins import load_registry

from .conftest import shared_file

talib = pytest.importorskip("talib")  # in the `test` extra; the skip only protects odd installs

TOL = 1e-9
KLINES = ("klines_1m", "binance_spot_2026-03-23_to_2026-04-22")


def _real(symbol: str) -> pd.DataFrame:
    df = pd.read_csv(shared_file(*KLINES, f"{symbol}-1m.csv.gz"), nrows=4000)
    df.index = pd.to_datetime(df.pop("open_time"), unit="ms", utc=True)
    return df


@pytest.fixture(scope="module", params=["synthetic", "binance_1m"])
def market(request):
    """(traded bars, reference bars) sharing one clock."""
    if request.param == "synthetic":
        m = generate_market(SyntheticMarketConfig(days=3, seed=5))
        return m["BNBUSDT"].bars, m["BTCUSDT"].bars
    return _real("BNBUSDT"), _real("BTCUSDT")


def _features(name: str, bars: pd.DataFrame, reference: pd.DataFrame | None = None, **params):
    plugin = load_registry().feature(name)(**params)
    frame = compute_features(FeaturePipeline([plugin]), InstrumentData("X", bars), bars, reference)
    return plugin, frame


def _ohlcv(bars):
    return tuple(bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))


def _log_returns(close):
    return np.concatenate(([np.nan], np.diff(np.log(close))))


def _sample_std(x, n):
    return talib.STDDEV(x, n, 1.0) * math.sqrt(n / (n - 1))  # TA-Lib's STDDEV is the population std


def _zscore(x, n):
    return (x - talib.SMA(x, n)) / _sample_std(x, n)


def _assert_matches(plugin, frame, expected: dict[str, np.ndarray]):
    """From bar ``warmup_bars()`` on every output is finite and equals TA-Lib's value."""
    start = plugin.warmup_bars() - 1
    assert set(expected) == set(plugin.output_names())
    after = frame.iloc[start:]
    assert np.isfinite(after.to_numpy()).all(), "an output is not finite after the declared warm-up"
    for name, want in expected.items():
        got = frame[name].to_numpy()[start:]
        want = np.asarray(want, dtype=np.float64)[start:]
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=name)


def test_technical_layer_equals_talib(market):
    bars, _ = market
    plugin, f = _features("technical", bars)
    _, h, lo, c, _ = _ohlcv(bars)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, _, lower = talib.BBANDS((h + lo + c) / 3.0, 20, 2.0, 2.0, 0)
    expected = {f"tech_ema_dist_{n}": np.log(c / talib.EMA(c, n)) for n in (12, 26, 50)}
    expected |= {
        "tech_rsi_14": talib.RSI(c, 14) / 100.0,
        "tech_macd": macd / c,
        "tech_macd_signal": signal / c,
        "tech_macd_hist": hist / c,
        "tech_bb_upper": (upper - c) / c,
        "tech_bb_lower": (lower - c) / c,
        "tech_bb_position": (c - lower) / (upper - lower),
    }
    _assert_matches(plugin, f, expected)


def test_rsi_and_ema_follow_talib_for_other_periods(market):
    """Not just the defaults: any period, and MACD with fast/slow/signal other than 12/26/9."""
    bars, _ = market
    plugin, f = _features(
        "technical", bars, ema_periods=(5, 9, 100), rsi_period=6, macd_fast=5, macd_slow=35, macd_signal=5
    )
    c = bars["close"].to_numpy(np.float64)
    start = plugin.warmup_bars() - 1
    macd, signal, _ = talib.MACD(c, 5, 35, 5)
    for name, want in {
        "tech_rsi_6": talib.RSI(c, 6) / 100.0,
        "tech_ema_dist_5": np.log(c / talib.EMA(c, 5)),
        "tech_ema_dist_100": np.log(c / talib.EMA(c, 100)),
        "tech_macd": macd / c,
        "tech_macd_signal": signal / c,
    }.items():
        np.testing.assert_allclose(f[name].to_numpy()[start:], want[start:], rtol=0, atol=TOL, err_msg=name)


def test_core_layer_equals_talib(market):
    bars, _ = market
    plugin, f = _features("core", bars)
    _, h, lo, c, v = _ohlcv(bars)
    r = _log_returns(c)
    vol = _sample_std(r, 15)
    expected = {f"core_logret_{k}": np.log(talib.ROCR(c, k)) for k in (1, 5, 15)}
    expected |= {
        "core_vol_15": vol,
        "core_ema_dist_20": np.log(c / talib.EMA(c, 20)) / vol,
        "core_range_vol": np.log(h / lo) / vol,
        "core_volume_z_60": _zscore(v, 60),
    }
    _assert_matches(plugin, f, expected)


def test_lagged_layer_equals_talib(market):
    bars, _ = market
    plugin, f = _features("lagged", bars)
    *_, c, v = _ohlcv(bars)
    r = _log_returns(c)
    day = 86_400 * 10**9
    angle = 2 * np.pi * (bars.index.asi8 % day) / day
    expected = {f"lag_ret_{k}": talib.ROC(c, k) / 100.0 for k in (1, 5, 15, 60, 240, 1440)}
    expected |= {f"lag_logret_{k}": np.log(talib.ROCR(c, k)) for k in (1, 5)}
    expected |= {f"lag_ret_std_{k}": _sample_std(r, k) for k in (15, 60)}
    expected |= {
        "lag_volume_z_60": _zscore(v, 60),
        "lag_time_of_day_sin": np.sin(angle),
        "lag_time_of_day_cos": np.cos(angle),
    }
    _assert_matches(plugin, f, expected)


def test_volatility_range_estimators_equal_talib(market):
    bars, _ = market
    vol = load_registry().feature("volatility")()
    vol.fit(bars)
    f = compute_features(FeaturePipeline([vol]), InstrumentData("X", bars), bars)
    o, h, lo, c, _ = _ohlcv(bars)
    r = _log_returns(c)
    hl, co = np.log(h / lo), np.log(c / o)
    windows = np.lib.stride_tricks.sliding_window_view(c, 60)
    drawdown = np.full(len(c), np.nan)
    drawdown[59:] = np.max(1.0 - windows / np.maximum.accumulate(windows, axis=1), axis=1)
    # bars since the latest of the equal highest highs (TA-Lib's MAXINDEX may pick an earlier one)
    highs = np.lib.stride_tricks.sliding_window_view(h, 60)
    since = np.full(len(h), np.nan)
    since[59:] = np.argmax(highs[:, ::-1], axis=1)
    np.testing.assert_array_equal(h[np.arange(59, len(h)) - since[59:].astype(int)], talib.MAX(h, 60)[59:])
    expected = {
        "vol_garch": f["vol_garch"].to_numpy(),  # fitted: its own test is tests/test_garch_fit.py
        "vol_realised_15": np.sqrt(talib.SUM(r * r, 15)),
        "vol_parkinson_15": np.sqrt(talib.SMA(hl * hl, 15) / (4 * math.log(2))),
        "vol_garman_klass_15": np.sqrt(talib.SMA(0.5 * hl * hl - (2 * math.log(2) - 1) * co * co, 15)),
        "vol_max_drawdown_60": drawdown,
        "vol_time_since_high_60": since / 60.0,
    }
    _assert_matches(vol, f, expected)


def test_cross_asset_correlation_equals_talib(market):
    bars, ref = market
    plugin, f = _features("cross_asset", bars, ref)
    c, rc = bars["close"].to_numpy(np.float64), ref["close"].to_numpy(np.float64)
    # the value at t uses returns up to bar t−1 (reference bars closing at t are not yet known)
    x = np.concatenate(([np.nan], _log_returns(c)[:-1]))
    y = np.concatenate(([np.nan], _log_returns(rc)[:-1]))
    ratio = _sample_std(x, 60) / _sample_std(y, 60)
    expected = {
        "xa_ref_corr_60": talib.CORREL(x, y, 60),
        "xa_ref_ret_lag1": y,
        "xa_ref_ret_lag2": np.concatenate(([np.nan], y[:-1])),
        "xa_vol_ratio_60": ratio,
    }
    # CORREL and STDDEV accumulate running sums: agreement to 1e-9 relative, not to rounding
    start = plugin.warmup_bars() - 1
    assert np.isfinite(f.iloc[start:].to_numpy()).all()
    for name, want in expected.items():
        np.testing.assert_allclose(f[name].to_numpy()[start:], want[start:], rtol=1e-7, atol=TOL, err_msg=name)


@pytest.mark.parametrize("window", [14, 60])
def test_atr_estimator_is_wilders_atr(market, window):
    bars, _ = market
    _, h, lo, c, _ = _ohlcv(bars)
    got = trailing_volatility(bars, "atr", window).to_numpy()
    want = talib.ATR(h, lo, c, window) / c
    assert np.isnan(got[:window]).all() and np.isfinite(got[window:]).all()
    np.testing.assert_allclose(got[window:], want[window:], rtol=1e-12, atol=0)
