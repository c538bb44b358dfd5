"""Trading metrics from a backtest result (quantstats for the return statistics)."""

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from lbml.engine.backtest import BacktestResult
from lbml.report.reconcile import Reconciliation, reconcile
from lbml.report.trade_costs import cost_summary, trade_cost_table


def daily_returns(equity: pd.Series, freq: str = "1D") -> pd.Series:
    """Daily (or ``freq``) simple returns of a mark-to-market curve, tz-naive (what quantstats expects)."""
    daily = equity.resample(freq).last().dropna()
    first = pd.Series([equity.iloc[0]], index=[daily.index[0] - pd.Timedelta(freq)])
    returns = pd.concat([first, daily]).pct_change().dropna()
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


def compute_metrics(result: BacktestResult, periods_per_year: int = 365) -> dict[str, Any]:
    import quantstats as qs

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
    }
    fills = result.record.fills_frame()
    table = trade_cost_table(trades, fills, ledger_frame(result))
    metrics |= cost_summary(table, fills, equity["equity"] if len(equity) else pd.Series(dtype=float))
    if len(equity) > 1:
        close = equity["close"]
        metrics["buy_and_hold_return"] = float(close.iloc[-1] / close.iloc[0] - 1.0)
        dd = equity["equity"] / equity["equity"].cummax() - 1.0
        metrics["max_drawdown"] = float(dd.min())
        returns = daily_returns(equity["equity"])
        if len(returns) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                metrics["sharpe"] = _finite(qs.stats.sharpe(returns, periods=periods_per_year))
                metrics["sortino"] = _finite(qs.stats.sortino(returns, periods=periods_per_year))
                metrics["volatility_ann"] = _finite(qs.stats.volatility(returns, periods=periods_per_year))
        lat = np.asarray(result.latencies_ns, dtype=np.float64) / 1e3
        if len(lat):
            metrics["per_bar_latency_us"] = {
                "p50": float(np.percentile(lat, 50)),
                "p99": float(np.percentile(lat, 99)),
            }
    return metrics


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
