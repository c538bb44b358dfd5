"""The fast rolling helpers equal the straightforward formulas they replace, bit for bit (``==``)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nautilus_trader.indicators import BollingerBands

from lbml.features.rolling import OrderedWindow, RollingMaxDrawdown, RollingMoments, RollingPair, RollingSum
from plugins.features_technical import bollinger_bands


def scan_max_drawdown(closes) -> float:
    """The direct O(window) scan: 1 − min over the window of close / running peak."""
    peak = closes[0]
    worst = 1.0
    for c in closes:
        if c > peak:
            peak = c
        else:
            ratio = c / peak
            if ratio < worst:
                worst = ratio
    return 1.0 - worst


def assert_drawdown_matches_scan(prices, window: int) -> None:
    dd = RollingMaxDrawdown(window)
    for i, price in enumerate(prices):
        dd.push(price)
        expected = scan_max_drawdown(prices[max(0, i - window + 1) : i + 1])
        assert dd.value() == expected, (i, dd.value(), expected)
        assert dd.full == (i + 1 >= window)


@pytest.mark.parametrize("window", [2, 3, 15, 60])
def test_drawdown_equals_the_scan_on_random_walks(window):
    rng = np.random.default_rng(window)
    walk = 100.0 * np.exp(np.cumsum(rng.standard_t(4, 3000) * 2e-3))
    assert_drawdown_matches_scan(walk.tolist(), window)
    # Prices on a coarse tick grid: many equal closes, equal peaks and equal ratios.
    assert_drawdown_matches_scan(np.round(walk, 0).tolist(), window)


def test_drawdown_on_monotone_and_flat_series():
    for prices in ([1.0 + i for i in range(200)], [300.0 - i for i in range(200)], [5.0] * 200):
        assert_drawdown_matches_scan(prices, 17)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0, 7.0]), min_size=1, max_size=80),
    st.integers(min_value=1, max_value=12),
)
def test_drawdown_equals_the_scan_with_ties(prices, window):
    assert_drawdown_matches_scan(prices, window)


@pytest.mark.parametrize("period,k", [(20, 2.0), (2, 0.5), (7, 3.0)])
def test_bands_equal_nautilus_bollinger_bands(period, k):
    rng = np.random.default_rng(period)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, 2000)))
    high = close * np.exp(np.abs(rng.normal(0, 5e-4, 2000)))
    low = close * np.exp(-np.abs(rng.normal(0, 5e-4, 2000)))
    reference = BollingerBands(period, k)
    window = OrderedWindow(period)
    for h, lo, c in zip(high.tolist(), low.tolist(), close.tolist()):
        reference.update_raw(h, lo, c)
        upper, lower = bollinger_bands(window, (h + lo + c) / 3.0, k)
        assert window.full == reference.initialized
        if reference.initialized:
            assert (upper, lower) == (reference.upper, reference.lower)
        else:
            assert math.isnan(upper) and math.isnan(lower)


def test_ordered_window_view_is_the_last_values_oldest_first():
    window = OrderedWindow(5)
    values = [float(i) for i in range(23)]
    for i, x in enumerate(values):
        view = window.push(x)
        if window.full:
            assert view.tolist() == values[i - 4 : i + 1]


def test_rolling_sum_matches_rolling_moments_sums():
    rng = np.random.default_rng(1)
    xs = rng.lognormal(0, 1, 500).tolist()
    fast, moments = RollingSum(30), RollingMoments(30)
    for x in xs:
        fast.push(x)
        moments.push(x)
        assert (fast.total, fast.mean(), fast.full, fast.count) == (
            moments.total,
            moments.mean(),
            moments.full,
            moments.count,
        )


def test_rolling_moments_std_is_the_sample_std():
    rng = np.random.default_rng(2)
    xs = rng.normal(0, 1, 300)
    moments = RollingMoments(25)
    for i, x in enumerate(xs.tolist()):
        moments.push(x)
        assert moments.full == (i >= 24)
        if moments.full:
            assert moments.std() == pytest.approx(np.std(xs[i - 24 : i + 1], ddof=1), rel=1e-9)


def test_rolling_pair_correlation_and_ratio():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 400)
    y = 0.5 * x + rng.normal(0, 1, 400)
    pair = RollingPair(50)
    for i in range(len(x)):
        pair.push(float(x[i]), float(y[i]))
        if pair.full:
            xs, ys = x[i - 49 : i + 1], y[i - 49 : i + 1]
            corr, ratio = pair.correlation_and_ratio()
            assert (corr, ratio) == (pair.correlation(), pair.std_ratio())
            assert corr == pytest.approx(np.corrcoef(xs, ys)[0, 1], rel=1e-9)
            assert ratio == pytest.approx(np.std(xs) / np.std(ys), rel=1e-9)
    flat = RollingPair(3)
    for v in (1.0, 2.0, 3.0):
        flat.push(v, 4.0)
    assert flat.correlation() == 0.0 and math.isnan(flat.std_ratio())


def test_one_call_push_methods_equal_push_then_read():
    rng = np.random.default_rng(4)
    xs = np.concatenate([rng.lognormal(0, 1, 200), np.full(40, 3.0)]).tolist()  # ends flat
    sums, sum_ref = RollingSum(20), RollingSum(20)
    stds, zs, moments = RollingMoments(20), RollingMoments(20), RollingMoments(20)
    for x in xs:
        sum_ref.push(x)
        moments.push(x)
        mean = sums.push_mean(x)
        std = stds.push_std(x)
        z = zs.push_zscore(x)
        if not moments.full:
            assert math.isnan(mean) and math.isnan(std) and math.isnan(z)
            continue
        assert mean == sum_ref.mean()
        assert std == moments.std()
        sd = moments.std()
        assert z == ((x - moments.mean()) / sd if sd > 0 else 0.0)
    assert z == 0.0  # a flat window
