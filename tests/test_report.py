"""Run-folder reports: daily bucketing, drawdown statistics, the tearsheet page and the trade chart.

Every number is proven independently: the tests recompute daily returns, drawdowns and Sharpe from the
equity curve with a few lines of pandas (and quantstats where it is right) and compare with
``metrics.json`` and with what the tearsheet page shows.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from lbml.report.metrics import daily_returns, return_statistics


def _minute_curve(start: str, end: str, values) -> pd.Series:
    index = pd.date_range(start, end, freq="1min", tz="UTC")
    return pd.Series(values(len(index)), index=index, dtype=float)


@pytest.mark.parametrize("first_close", ["2024-01-19 01:01", "2024-01-19 00:00", "2024-01-19 00:01"])
def test_twelve_days_of_bars_give_twelve_daily_returns(first_close):
    # bars closing up to 2024-01-31 00:00:00: that last bar ends 30 January, it is not a day of its own
    curve = _minute_curve(first_close, "2024-01-31 00:00", lambda n: 100.0 + np.arange(n))
    returns = daily_returns(curve)
    assert len(returns) == 12
    assert list(returns.index) == list(pd.date_range("2024-01-19", "2024-01-30", freq="D"))
    # own few lines: the close of each day is the last mark at or before the next midnight
    ends = [curve[curve.index <= pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)].iloc[-1]
            for day in returns.index]
    expected = pd.Series(ends).pct_change()
    expected.iloc[0] = ends[0] / curve.iloc[0] - 1.0
    np.testing.assert_allclose(returns.to_numpy(), expected.to_numpy(), rtol=1e-12)
    # compounding the daily returns gives the whole curve's return
    assert np.prod(1.0 + returns) - 1.0 == pytest.approx(curve.iloc[-1] / curve.iloc[0] - 1.0)


def test_hourly_returns_put_the_mark_on_the_hour_in_the_hour_before():
    curve = _minute_curve("2024-01-19 00:01", "2024-01-19 03:00", lambda n: 100.0 + np.arange(n))
    assert len(daily_returns(curve, "1h")) == 3


def losing_curve() -> pd.DataFrame:
    """12 days of minute bars: a gain to a peak on day 2, then a slide to -45% that never recovers."""
    index = pd.date_range("2024-01-19 01:01", "2024-01-31 00:00", freq="1min", tz="UTC")
    t = np.arange(len(index)) / len(index)
    rng = np.random.default_rng(3)
    path = np.where(t < 0.1, 1.0 + 0.05 * t / 0.1, 1.05 - (1.05 - 0.55) * (t - 0.1) / 0.9)
    equity = 100_000.0 * path * (1.0 + 0.002 * rng.standard_normal(len(index)))
    equity[0], equity[-1] = 100_000.0, 55_000.0
    close = 600.0 * (1.0 + 0.05 * t) * (1.0 + 0.001 * rng.standard_normal(len(index)))
    return pd.DataFrame({"equity": equity, "balance": equity, "close": close}, index=index)


def _own_drawdown(curve: pd.Series) -> tuple[float, pd.Timestamp, pd.Timestamp]:
    dd = curve / curve.cummax() - 1.0
    trough = dd.idxmin()
    peak = curve.loc[:trough].idxmax()
    return float(dd.min()), peak, trough


def test_drawdown_of_a_curve_that_never_recovers():
    import quantstats as qs

    equity = losing_curve()
    stats = return_statistics(equity, 365)
    mdd, peak, trough = _own_drawdown(equity["equity"])
    assert stats["max_drawdown"] == pytest.approx(mdd) and mdd < -0.45
    assert stats["drawdown"]["peak"] == peak.isoformat() and stats["drawdown"]["trough"] == trough.isoformat()
    assert stats["drawdown"]["recovery"] is None
    assert stats["drawdown"]["days"] == pytest.approx((equity.index[-1] - peak) / pd.Timedelta(days=1))
    assert stats["drawdown"]["longest_ongoing"] and stats["drawdown"]["longest_days"] >= stats["drawdown"]["days"]
    assert stats["recovery_factor"] == pytest.approx(-0.45 / abs(mdd)) and stats["recovery_factor"] < 0
    # quantstats' drawdown table agrees when given the bar-level drawdown (it starts at 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = qs.stats.drawdown_details(equity["equity"] / equity["equity"].cummax() - 1.0)
    assert details["max drawdown"].min() / 100 == pytest.approx(mdd)
    # 12 days: no CAGR (nor Calmar), with the reason
    assert stats["cagr"] is None and stats["calmar"] is None and "11.96 days" in stats["notes"]["cagr"]
    assert stats["daily_returns"]["n"] == 12
    assert stats["monthly_returns"] == [{"month": "2024-01", "return": pytest.approx(-0.45), "days": 12}]
    returns = daily_returns(equity["equity"])
    assert stats["sharpe"] == pytest.approx(returns.mean() / returns.std() * np.sqrt(365))


def test_a_year_of_returns_gets_a_cagr():
    index = pd.date_range("2023-01-01 00:00", "2024-01-01 00:00", freq="1h", tz="UTC")
    equity = pd.DataFrame({"equity": np.linspace(100.0, 121.0, len(index)), "close": 1.0}, index=index)
    stats = return_statistics(equity, 365)
    assert stats["daily_returns"]["n"] == 365
    assert stats["cagr"] == pytest.approx(0.21, rel=1e-9) and "cagr" not in stats["notes"]
    assert stats["max_drawdown"] == 0.0 and stats["recovery_factor"] is None
