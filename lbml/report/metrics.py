"""Trading metrics from a backtest result (quantstats for the return statistics)."""

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from lbml.engine.backtest import BacktestResult
from lbml.engine.exit_reasons import EXIT_REASONS
from lbml.engine.recorder import EXPOSURE_TOLERANCE
from lbml.report.reconcile import Reconciliation, reconcile
from lbml.report.trade_costs import cost_summary, trade_cost_table


def daily_returns(equity: pd.Series, freq: str = "1D") -> pd.Series:
    """Return the simple returns per ``freq`` period of a mark-to-market curve, tz-naive (as quantstats expects).

    Each mark counts in the period its bar *closes* in, so a bar closing at 00:00:00 ends the day before
    (``closed="right"``); periods are labelled by their start. The first mark is the base of the first
    return, so 12 days of bars give 12 daily returns.
    """
    step = pd.Timedelta(freq)
    ends = equity.iloc[1:].resample(freq, closed="right", label="left").last().dropna()
    if ends.empty:
        return pd.Series(dtype=float)
    base = pd.Series([equity.iloc[0]], index=[ends.index[0] - step])
    returns = pd.concat([base, ends]).pct_change().iloc[1:]
    returns.index = returns.index.tz_localize(None)
    return returns


def ledger_frame(result: BacktestResult) -> pd.DataFrame:
    """Every charge of every cost module (ts, kind, amount; positive = paid), in time order."""
    rows = []
    for kind, ledger in (
        ("slippage", result.slippage),
        ("gap_slippage", result.gap_slippage),
        ("borrow", result.borrow),
        ("funding", result.funding),
        ("liquidation_penalty", result.liquidation),
        ("gas", result.gas),
    ):
        rows += [(ts, kind, amount) for ts, amount in ledger.entries]
    frame = pd.DataFrame(rows, columns=["ts", "kind", "amount"]).sort_values("ts", kind="stable")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def return_statistics(equity: pd.DataFrame, periods_per_year: int = 365) -> dict[str, Any]:
    """Return the drawdown, daily, monthly and annualised statistics of a curve (``equity``, ``close``).

    A statistic the window cannot support is ``None`` and ``notes[name]`` says why: CAGR and Calmar
    need a year of daily returns, Sharpe, Sortino and volatility at least two daily returns.
    """
    import quantstats as qs

    curve = equity["equity"]
    returns = daily_returns(curve)
    drawdown = drawdown_summary(curve)
    total = float(curve.iloc[-1] / curve.iloc[0] - 1.0)
    window_days = (curve.index[-1] - curve.index[0]) / pd.Timedelta(days=1)
    stats: dict[str, Any] = {
        "window_days": window_days,
        "first_mark": curve.index[0].isoformat(),
        "last_mark": curve.index[-1].isoformat(),
        "buy_and_hold_return": float(equity["close"].iloc[-1] / equity["close"].iloc[0] - 1.0),
        "max_drawdown": drawdown.pop("max_drawdown"),
        "drawdown": drawdown,
        "daily_returns": {
            "n": len(returns),
            "best": float(returns.max()) if len(returns) else None,
            "worst": float(returns.min()) if len(returns) else None,
            "positive_share": float((returns > 0).mean()) if len(returns) else None,
        },
        "monthly_returns": [
            {"month": str(month), "return": float(np.prod(1.0 + group) - 1.0), "days": len(group)}
            for month, group in returns.groupby(returns.index.to_period("M"))
        ],
    }
    notes: dict[str, str] = {}
    dd = abs(stats["max_drawdown"])
    stats["recovery_factor"] = total / dd if dd > 0 else None
    if dd == 0:
        notes["recovery_factor"] = "equity never fell below a previous high"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(returns) >= 2:
            stats["sharpe"] = _finite(qs.stats.sharpe(returns, periods=periods_per_year))
            stats["sortino"] = _finite(qs.stats.sortino(returns, periods=periods_per_year))
            stats["volatility_ann"] = _finite(qs.stats.volatility(returns, periods=periods_per_year))
        else:
            for name in ("sharpe", "sortino", "volatility_ann"):
                stats[name] = None
                notes[name] = f"{len(returns)} daily returns (needs 2)"
        for name in ("sharpe", "sortino"):
            if len(returns) >= 2 and stats[name] is None:
                notes[name] = "daily returns never varied" if returns.std() == 0 else "no losing day"
        if len(returns) >= periods_per_year:
            stats["cagr"] = _finite(qs.stats.cagr(returns, periods=periods_per_year))
            stats["calmar"] = stats["cagr"] / dd if stats["cagr"] is not None and dd > 0 else None
        else:
            stats["cagr"] = stats["calmar"] = None
            notes["cagr"] = notes["calmar"] = (
                f"window {window_days:.2f} days: {len(returns)} daily returns < {periods_per_year} (one year)"
            )
    stats["notes"] = notes
    return stats


def drawdown_summary(curve: pd.Series) -> dict[str, Any]:
    """Return the maximum drawdown with its peak, trough and recovery (``None`` while still under water),
    its length in days up to recovery or the last mark, and the longest drawdown (ongoing or not)."""
    high = curve.cummax()
    dd = curve / high - 1.0
    summary: dict[str, Any] = {"max_drawdown": float(min(dd.min(), 0.0))}
    if summary["max_drawdown"] == 0.0:
        return summary | {"peak": None, "trough": None, "recovery": None, "days": 0.0, "longest_days": 0.0,
                          "longest_ongoing": False}
    trough = dd.idxmin()
    before = curve.loc[:trough]
    peak = before.index[before >= high[trough]][-1]
    back = curve.loc[trough:]
    recovered = back.index[back >= high[trough]]
    recovery = recovered[0] if len(recovered) else None
    day = pd.Timedelta(days=1)
    times = curve.index.to_series()
    under = dd < 0.0
    last_high = times.where(~under).ffill()
    closed = (times - last_high.shift(1)).where(~under & under.shift(1, fill_value=False))
    ongoing = times.iloc[-1] - last_high.iloc[-1]
    longest = max(closed.max() if closed.notna().any() else pd.Timedelta(0), ongoing)
    return summary | {
        "peak": peak.isoformat(),
        "trough": trough.isoformat(),
        "recovery": recovery.isoformat() if recovery is not None else None,
        "days": ((recovery if recovery is not None else curve.index[-1]) - peak) / day,
        "longest_days": longest / day,
        "longest_ongoing": bool(under.iloc[-1]) and ongoing >= longest,
    }


def reconciliation_for(result: BacktestResult) -> Reconciliation:
    equity = result.record.equity_frame()
    last_close = float(equity["close"].iloc[-1]) if len(equity) else 0.0
    engine_equity = float(equity["equity"].iloc[-1]) if len(equity) else result.final_balance
    return reconcile(
        initial=result.starting_balance,
        fills=result.record.fills_frame(),
        last_close=last_close,
        slippage=result.slippage.total + result.gap_slippage.total,
        borrow=result.borrow.total,
        engine_equity=engine_equity,
        funding=result.funding.total,
        liquidation_penalty=result.liquidation.total,
        gas=result.gas.total,
    )


_NEGATIVE_EQUITY_WHY = {
    "none": "leverage.model = 'none' has no liquidation, so nothing caps a leveraged loss at the account",
    "aave_lending": "bad debt: the collateral was worth less than the debt before a liquidation closed it",
    "exchange_margin": "a charge outside any position (isolated positions lose at most their margin)",
}


def negative_equity(equity: pd.Series, leverage_model: str) -> str | None:
    """One line saying when and why the equity went below zero (None if it never did)."""
    if not len(equity) or equity.min() >= 0.0:
        return None
    ts = equity.idxmin()
    why = _NEGATIVE_EQUITY_WHY.get(leverage_model, f"leverage.model = {leverage_model!r}")
    return f"equity reached {equity.min():,.2f} at {ts}: {why}"


def compute_metrics(result: BacktestResult, periods_per_year: int = 365) -> dict[str, Any]:
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    equity = result.record.equity_frame()
    trades = result.record.trades_frame()
    rec = reconciliation_for(result)
    metrics: dict[str, Any] = {
        "mode": result.mode,
        "n_events": result.n_events,
        "n_bars": result.n_bars,
        "n_predictions": result.n_predictions,
        "currency": result.currency,
        "initial_equity": result.starting_balance,
        "final_equity": rec.engine_equity,
        "final_balance": result.final_balance,
        "total_return": rec.engine_equity / result.starting_balance - 1.0,
        "n_trades": int(len(trades)),
        "win_rate": float((trades["realized_pnl"] > 0).mean()) if len(trades) else float("nan"),
        "avg_trade_pnl": float(trades["realized_pnl"].mean()) if len(trades) else float("nan"),
        "avg_holding_min": float(trades["duration_min"].mean()) if len(trades) else float("nan"),
        "costs": {
            "fees": rec.commissions,
            "slippage": rec.slippage,
            "borrow": rec.borrow,
            "funding": rec.funding,
            "liquidation_penalty": rec.liquidation_penalty,
            "gas": rec.gas,
            "total": rec.commissions + rec.slippage + rec.borrow + rec.funding + rec.liquidation_penalty + rec.gas,
        },
        "n_liquidations": result.n_liquidations,
        "leverage_model": result.leverage_model,
        "realized_pnl_gross": rec.realized_pnl,
        "unrealized_pnl": rec.unrealized_pnl,
        "reconciliation_error": rec.error,
        "backtest_seconds": result.run_seconds,
        "exit_reasons": exit_reason_counts(trades),
        "negative_equity": negative_equity(equity["equity"] if len(equity) else pd.Series(dtype=float),
                                           result.leverage_model),
    }
    caps = result.record.exposure_caps
    if caps is not None:  # the cap invariant (lbml.engine.recorder): entry notional / balance at entry
        metrics |= {"max_exposure": result.record.max_exposure, "exposure_cap": caps[0],
                    "exposure_cap_short": caps[1], "exposure_tolerance": EXPOSURE_TOLERANCE}
    fills = result.record.fills_frame()
    table = trade_cost_table(trades, fills, ledger_frame(result))
    metrics |= cost_summary(table, fills, equity["equity"] if len(equity) else pd.Series(dtype=float))
    if len(equity) > 1:
        metrics |= return_statistics(equity, periods_per_year)
        lat = np.asarray(result.latencies_ns, dtype=np.float64) / 1e3
        if len(lat):
            metrics["per_bar_latency_us"] = {
                "p50": float(np.percentile(lat, 50)),
                "p99": float(np.percentile(lat, 99)),
            }
    return metrics


def exit_reason_counts(trades: pd.DataFrame) -> dict[str, int]:
    """How many trades each exit reason closed (every reason listed; they sum to the trades)."""
    counts = trades["exit_reason"].value_counts() if "exit_reason" in trades else pd.Series(dtype=int)
    out = {reason: int(counts.get(reason, 0)) for reason in EXIT_REASONS}
    out |= {str(reason): int(n) for reason, n in counts.items() if reason not in out}
    return out


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
