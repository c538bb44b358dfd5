"""Where a bar-mode fill may lie: lbml's fill model (README, "Fills"), checked fill by fill.

- A market order decided on bar t fills at bar t+1's open, stamped with bar t+1's close: the first
  fill exactly at that open, for at most that bar's volume; the rest of a larger order one price
  tick worse (nautilus' L1 book holds one level of the bar's volume). Nothing else moves the price:
  lbml's slippage is a cost debited beside the fill (``ledgers.csv``), not a worse price.
- A resting order (stop-loss, take-profit, trailing stop, liquidation stop) fills inside its fill
  bar's range, or, when the market jumped over it between the previous close and the bar's open, at
  its own price between those two (nautilus fills a stop at its trigger, a limit at its limit):
  within [min(low, previous close), max(high, previous close)], give or take one tick.
- A stop filled outside the bar's own [low, high] (the market gapped through it) is charged down to
  the bar's open by the gap-through module: its ``gap_slippage`` charge at that time is
  quantity x |fill price - open|, so the price it effectively paid is the open.
"""

import numpy as np
import pandas as pd

MARKET_TYPES = {"MARKET"}
STOP_TYPES = {"STOP_MARKET", "TRAILING_STOP_MARKET"}


def check_bar_fills(fills: pd.DataFrame, ledgers: pd.DataFrame, bars: pd.DataFrame, tick: float) -> dict[str, int]:
    """Assert the fill model on every fill of a bar-mode run; return how many fills of each kind.

    ``fills`` and ``ledgers`` as in a run folder (``ts`` parsed as UTC times), ``bars`` the traded
    symbol's bars indexed by close time (``open``, ``high``, ``low``, ``close``, ``volume``), ``tick``
    the instrument's price increment.
    """
    eps = tick * 1e-6
    prev_close = bars["close"].shift(1)
    gaps = ledgers[ledgers["kind"] == "gap_slippage"].groupby("ts")["amount"].sum() if len(ledgers) else pd.Series()
    counts = {"market_first": 0, "market_rest": 0, "resting": 0, "gapped_stops": 0}
    owed_outside: dict[pd.Timestamp, float] = {}  # stops filled outside the bar: charged to the open
    owed_at_most: dict[pd.Timestamp, float] = {}  # every stop filled better than the bar's open
    for order_id, legs in fills.groupby("order_id", sort=False):
        for k, (_, fill) in enumerate(legs.iterrows()):
            ts = fill["ts"]
            assert ts in bars.index, f"{order_id}: fill at {ts} is not a bar's close"
            bar = bars.loc[ts]
            where = f"{order_id} {fill['order_type']} {fill['side']} {fill['quantity']} at {fill['price']} ({ts})"
            if fill["order_type"] in MARKET_TYPES:
                assert fill["ts"] == legs["ts"].iloc[0], where + ": a market order filled over several bars"
                worse = (1.0 if fill["side"] == "BUY" else -1.0) * (fill["price"] - bar["open"])
                if k == 0:
                    assert abs(worse) <= eps, where + f": first fill not at the bar's open {bar['open']}"
                    counts["market_first"] += 1
                else:
                    assert abs(worse - tick) <= eps, where + f": rest not one tick worse than the open {bar['open']}"
                    first = legs["quantity"].iloc[0]
                    assert first <= bar["volume"] * (1 + 1e-9), where + ": first fill above the bar's volume"
                    counts["market_rest"] += 1
                continue
            prev = prev_close.loc[ts]
            lo = min(bar["low"], prev) if np.isfinite(prev) else bar["low"]
            hi = max(bar["high"], prev) if np.isfinite(prev) else bar["high"]
            assert lo - tick - eps <= fill["price"] <= hi + tick + eps, where + f": outside [{lo}, {hi}]"
            counts["resting"] += 1
            better = (1.0 if fill["side"] == "SELL" else -1.0) * (fill["price"] - bar["open"])
            if fill["order_type"] in STOP_TYPES and better > 0:
                owed_at_most[ts] = owed_at_most.get(ts, 0.0) + fill["quantity"] * better
            if bar["low"] - tick - eps <= fill["price"] <= bar["high"] + tick + eps:
                continue
            assert fill["order_type"] in STOP_TYPES, where + f": outside the bar's [{bar['low']}, {bar['high']}]"
            assert better > 0, where + ": a stop outside the bar on the wrong side of its open"
            owed_outside[ts] = owed_outside.get(ts, 0.0) + fill["quantity"] * better
            counts["gapped_stops"] += 1
    for ts, owed in owed_outside.items():
        charged = float(gaps.get(ts, 0.0))
        assert owed * (1 - 1e-9) <= charged <= owed_at_most[ts] * (1 + 1e-9), \
            f"gap-through at {ts}: charged {charged}, owed {owed} (at most {owed_at_most[ts]})"
    return counts
