"""Run-folder reports: daily bucketing, drawdown statistics, the tearsheet page and the trade chart.

Every number is proven independently: the tests recompute daily returns, drawdowns and Sharpe from the
equity curve with a few lines of pandas (and quantstats where it is right) and compare with
``metrics.json`` and with what the tearsheet page shows.
"""

import json
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
    """12 days of minute bars: a 1% gain to a peak in the first hours, then a slide to -45% that never
    recovers; the first day already ends below the start (quantstats then showed "-" for max drawdown)."""
    index = pd.date_range("2024-01-19 01:01", "2024-01-31 00:00", freq="1min", tz="UTC")
    t = np.arange(len(index)) / len(index)
    rng = np.random.default_rng(3)
    path = np.where(t < 0.02, 1.0 + 0.01 * t / 0.02, 1.01 - (1.01 - 0.55) * (t - 0.02) / 0.98)
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


def losing_result():
    """A backtest result of a short-only strategy that loses 45% over 12 days and never recovers: trades
    closed by stop-loss, take-profit and market orders, one liquidation, flat 10% of the time."""
    from lbml.engine.backtest import BacktestResult
    from lbml.engine.costs import CostLedger
    from lbml.engine.recorder import RunRecord

    frame = losing_curve()
    ns = frame.index.asi8
    held = (np.arange(len(frame)) % 10) != 0
    exposure = np.where(held, -1.5 * frame["equity"].to_numpy(), 0.0)
    fills, positions = [], []
    kinds = ["STOP_MARKET", "LIMIT", "MARKET"]
    for k, start in enumerate(range(5, len(frame) - 60, 1500)):
        end = start + 40
        entry, exit_ = float(frame["close"].iloc[start]), float(frame["close"].iloc[end])
        kind = "MARKET" if k == 7 else kinds[k % 3]
        fills.append({"ts": int(ns[start]), "order_id": f"E{k}", "side": "SELL", "quantity": 10.0, "price": entry,
                      "commission": 3.0, "liquidity": "TAKER", "order_type": "MARKET", "liquidation": False})
        fills.append({"ts": int(ns[end]), "order_id": f"X{k}", "side": "BUY", "quantity": 10.0, "price": exit_,
                      "commission": 3.0, "liquidity": "TAKER", "order_type": kind, "liquidation": k == 7})
        positions.append({"opened": int(ns[start]), "closed": int(ns[end]), "side": "SHORT", "quantity": 10.0,
                          "entry_price": entry, "exit_price": exit_, "realized_pnl": 10.0 * (entry - exit_),
                          "duration_min": 40.0})
    liquidated = fills[15]
    record = RunRecord(
        equity=list(zip(ns, frame["equity"], frame["balance"], frame["close"])),
        fills=fills, positions=positions,
        risk=list(zip(ns, exposure, np.abs(exposure) / frame["equity"], np.where(held, 3.0, np.inf),
                      np.full(len(frame), np.nan))),
    )
    penalty = CostLedger()
    penalty.add(liquidated["ts"], 25.0)
    return BacktestResult(
        record=record, borrow=CostLedger(), slippage=CostLedger(), starting_balance=100_000.0,
        final_balance=55_000.0, currency="USDT", mode="bars", n_events=len(frame), n_bars=len(frame),
        n_predictions=len(frame), liquidation=penalty, n_liquidations=1, leverage_model="isolated_margin",
        liquidations=[{"ts": liquidated["ts"], "order_id": "X7", "side": "BUY", "quantity": 10.0,
                       "price": liquidated["price"], "penalty": 25.0}],
    )


@pytest.fixture(scope="module")
def losing_run(tmp_path_factory):
    from lbml.report.metrics import compute_metrics
    from lbml.report.runfolder import write_reports, write_run_tables

    folder = tmp_path_factory.mktemp("losing")
    result = losing_result()
    write_run_tables(folder, result)
    metrics = compute_metrics(result, 365)
    write_reports(folder, result, metrics, "losing")
    return folder


def test_tearsheet_of_a_losing_run_shows_metrics_json_numbers(losing_run):
    from .report_support import assert_tearsheet_matches, labelled

    cells = assert_tearsheet_matches(losing_run)
    page = (losing_run / "tearsheet.html").read_text()
    rows = labelled(page)
    assert rows["Max drawdown"].startswith("-") and rows["Max drawdown"].endswith("%")
    assert rows["Max drawdown recovery"] == "not recovered"
    assert rows["Max drawdown peak"][:4] == "2024" and rows["Max drawdown trough"][:4] == "2024"
    assert float(rows["Recovery factor (total return / |max drawdown|)"]) < 0
    assert rows["Total return"] == "-45.00%"
    assert rows["Time in market"] == "90.00%"
    assert rows["CAGR"].startswith("n/a (window 11.96 days")
    assert rows["Daily returns"] == "12"
    assert [m for k, m in cells.items() if k.startswith("monthly_returns.") and k.endswith(".days")] == ["12"]
    assert "Rolling 30-day Sharpe omitted" in page
    for name in ("equity.png", "trades.png", "risk.png"):
        assert f"alt='{name}'" in page


def test_every_run_folder_gets_the_trade_chart(losing_run):
    from lbml.report.trade_chart import exit_reasons, read_run_frames

    metrics = json.loads((losing_run / "metrics.json").read_text())
    assert metrics["trades_chart"] == "trades.png" and (losing_run / "trades.png").stat().st_size > 20_000
    frames = read_run_frames(losing_run)
    reasons = exit_reasons(frames["trades"], frames["fills"])
    counts = reasons.value_counts().to_dict()
    assert counts.pop("liquidation") == 1 and set(counts) == {"stop_loss", "take_profit", "market"}
    # an ``exit_reason`` column, when the trades table has one, wins over the order types
    trades = frames["trades"].assign(exit_reason="signal")
    assert set(exit_reasons(trades, frames["fills"])) == {"signal"}
    assert set(exit_reasons(frames["trades"], frames["fills"].drop(columns="order_type"))) == {"exit"}


def test_long_lines_are_thinned_to_an_envelope_that_keeps_spikes_and_gaps():
    from lbml.report.plots import MAX_LINE_POINTS, envelope

    index = pd.date_range("2024-01-01", periods=300_000, freq="1min", tz="UTC")
    values = np.sin(np.arange(len(index)) / 5000.0)
    values[123_457], values[200_001] = 9.0, -9.0
    values[50_000:60_000] = np.nan
    thin = envelope(pd.Series(values, index=index))
    assert len(thin) <= MAX_LINE_POINTS + 2
    assert thin.max() == 9.0 and thin.min() == -9.0 and thin.index[-1] == index[-1]
    gap = thin[(thin.index >= index[50_000]) & (thin.index < index[60_000])]
    assert len(gap) and gap.isna().all()
    short = pd.Series([1.0, 2.0], index=index[:2])
    assert envelope(short) is short


def test_a_run_without_trades_shows_n_a_not_nan(tmp_path):
    from lbml.report.runfolder import finish_run_folder

    from .report_support import assert_tearsheet_matches, labelled

    equity = losing_curve()
    equity["equity"] = 100_000.0
    equity.to_csv(tmp_path / "equity.csv")
    metrics = {"n_trades": 0, "win_rate": float("nan"), "total_return": 0.0} | return_statistics(equity, 365)
    finish_run_folder(tmp_path, metrics, "flat")
    assert_tearsheet_matches(tmp_path)
    rows = labelled((tmp_path / "tearsheet.html").read_text())
    assert rows["Win rate"] == "n/a" and rows["Max drawdown"] == "0.00%"
    assert rows["Sharpe (daily, annualised)"] == "n/a (daily returns never varied)"
    assert rows["Recovery factor (total return / |max drawdown|)"] == "n/a (equity never fell below a previous high)"
