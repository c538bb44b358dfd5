"""Every round trip's gross PnL and what it cost, rebuilt from the fills and the cost ledgers.

Positions never overlap (one position at a time), so each charge belongs to the trade that was
opened last before it: trade k owns the fills and ledger charges stamped in
``[opened_k, closed_k]`` (fills) and ``[opened_k, end_k)`` (ledger charges), where ``end_k`` is the
next fill after the close or one minute after it, whichever comes first. That catches the exit's
slippage (debited by the venue module on the event after the fill) and every borrow/funding
charge while the position was open. A position still open when the data ends is a trade closed by
``end_of_data``, marked at the last close: its gross PnL adds the quantity it still holds at that
price. ``gross_pnl`` is the price move alone, ``side × Σ fill quantity × price``; ``net_pnl`` subtracts every cost, and the
trades' net PnL sums to the run's PnL (up to the costs charged before the first trade: none).
"""

import numpy as np
import pandas as pd

from lbml.engine.exit_reasons import END_OF_DATA

COST_KINDS = ("fees", "slippage", "borrow", "funding", "gas", "liquidation_penalty")


def trade_cost_table(trades: pd.DataFrame, fills: pd.DataFrame, ledgers: pd.DataFrame) -> pd.DataFrame:
    """Per trade: entry notional, gross PnL, each cost, total cost, net PnL and cost as a fraction of notional."""
    out = trades[[c for c in ("opened", "closed", "side", "quantity", "entry_price", "exit_price", "exit_reason")
                  if c in trades]].copy()
    n = len(out)
    if n == 0:
        for col in ("notional", "gross_pnl", *COST_KINDS, "total_cost", "net_pnl", "cost_pct"):
            out[col] = pd.Series(dtype=np.float64)
        return out
    opened = _ns(out["opened"])
    closed = _ns(out["closed"])
    fill_ts = _ns(fills["ts"])
    fill_owner = _owner(opened, closed, fill_ts)
    after = np.sort(fill_ts)
    nxt = np.searchsorted(after, closed, side="right")
    next_fill = np.where(nxt < len(after), after[np.minimum(nxt, len(after) - 1)], np.iinfo(np.int64).max)
    settled = np.minimum(next_fill - 1, closed + SETTLE_NS)
    signed_qty = np.where(fills["side"].to_numpy() == "BUY", 1.0, -1.0) * fills["quantity"].to_numpy(np.float64)
    cash_flow = -signed_qty * fills["price"].to_numpy(np.float64)
    gross = np.zeros(n)
    held = np.zeros(n)
    fees = np.zeros(n)
    ok = fill_owner >= 0
    np.add.at(gross, fill_owner[ok], cash_flow[ok])
    np.add.at(held, fill_owner[ok], signed_qty[ok])
    if "exit_reason" in out:  # a trade closed by the end of the data still holds its quantity
        still_held = out["exit_reason"].to_numpy() == END_OF_DATA
        gross += np.where(still_held, held, 0.0) * out["exit_price"].to_numpy(np.float64)
    np.add.at(fees, fill_owner[ok], fills["commission"].to_numpy(np.float64)[ok])
    out["notional"] = out["quantity"].to_numpy(np.float64) * out["entry_price"].to_numpy(np.float64)
    out["gross_pnl"] = gross
    out["fees"] = fees
    ledger_owner = _owner(opened, settled, _ns(ledgers["ts"])) if len(ledgers) else np.zeros(0, dtype=np.int64)
    kinds = ledgers["kind"].replace({"gap_slippage": "slippage"}).to_numpy() if len(ledgers) else np.zeros(0)
    amounts = ledgers["amount"].to_numpy(np.float64) if len(ledgers) else np.zeros(0)
    for kind in COST_KINDS[1:]:
        col = np.zeros(n)
        sel = (kinds == kind) & (ledger_owner >= 0)
        np.add.at(col, ledger_owner[sel], amounts[sel])
        out[kind] = col
    out["total_cost"] = out[list(COST_KINDS)].sum(axis=1)
    out["net_pnl"] = out["gross_pnl"] - out["total_cost"]
    out["cost_pct"] = out["total_cost"] / out["notional"]
    return out


def cost_summary(table: pd.DataFrame, fills: pd.DataFrame, equity: pd.Series) -> dict:
    """Gross PnL, costs per round trip, turnover and the break-even win rate against the realized one."""
    n = len(table)
    total_cost = float(table["total_cost"].sum()) if n else 0.0
    gross = float(table["gross_pnl"].sum()) if n else 0.0
    traded = float((fills["quantity"] * fills["price"]).sum()) if len(fills) else 0.0
    mean_equity = float(equity.mean()) if len(equity) else float("nan")
    out = {
        "gross_pnl": gross,
        "total_costs": total_cost,
        "costs_over_gross_pnl": total_cost / gross if gross > 0 else None,
        "cost_per_round_trip": total_cost / n if n else None,
        "cost_per_round_trip_pct": float(table["total_cost"].sum() / table["notional"].sum()) if n else None,
        "traded_notional": traded,
        "turnover": traded / mean_equity if mean_equity > 0 else None,
        "win_rate_net": float((table["net_pnl"] > 0).mean()) if n else None,
        "break_even_win_rate": None,
    }
    if n:
        wins, losses = table.loc[table["net_pnl"] > 0, "net_pnl"], table.loc[table["net_pnl"] <= 0, "net_pnl"]
        if len(wins) and len(losses):
            # With the realized average win W and loss L, a trader breaks even at L / (W + L).
            avg_win, avg_loss = float(wins.mean()), float(-losses.mean())
            out["break_even_win_rate"] = avg_loss / (avg_win + avg_loss)
    return out


def _ns(values) -> np.ndarray:
    values = pd.Series(values)
    if values.dtype == object:  # ISO strings, as read back from a run folder's CSV files
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601")).asi8
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).asi8


SETTLE_NS = 60_000_000_000  # charges booked on the events just after a trade's exit fill


def _owner(opened_ns: np.ndarray, last_ns: np.ndarray, ts_ns: np.ndarray) -> np.ndarray:
    """Index of the trade each time belongs to: opened at or before it, ``last_ns`` not yet passed (else -1)."""
    owner = np.searchsorted(opened_ns, ts_ns, side="right") - 1
    late = (owner >= 0) & (ts_ns > last_ns[np.maximum(owner, 0)])
    return np.where(late, -1, owner)
