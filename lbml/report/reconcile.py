"""Equity reconciliation: rebuild final equity from the fills and cost ledgers alone.

final equity = initial + realised PnL (from fills, average-cost netting) + unrealised PnL of the open
position at the last close − commissions − slippage − borrow interest − net funding paid
− liquidation penalties.

The engine's own mark-to-market equity must agree; the difference is ``reconciliation_error``.
"""

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Reconciliation:
    initial: float
    realized_pnl: float
    unrealized_pnl: float
    commissions: float
    slippage: float
    borrow: float
    rebuilt_equity: float
    engine_equity: float
    funding: float = 0.0
    liquidation_penalty: float = 0.0
    gas: float = 0.0

    @property
    def error(self) -> float:
        return abs(self.rebuilt_equity - self.engine_equity)


def realized_from_fills(fills: pd.DataFrame) -> tuple[float, float, float]:
    """Return (realised PnL, open quantity (signed), average open price) by average-cost netting."""
    position = 0.0
    avg_price = 0.0
    realized = 0.0
    for side, qty, price in zip(fills["side"], fills["quantity"], fills["price"]):
        signed = qty if side == "BUY" else -qty
        if position == 0.0 or (position > 0) == (signed > 0):
            total = position + signed
            avg_price = (avg_price * abs(position) + price * qty) / abs(total)
            position = total
            continue
        closing = min(qty, abs(position))
        direction = 1.0 if position > 0 else -1.0
        realized += closing * (price - avg_price) * direction
        position += signed
        if abs(position) < 1e-12:
            position, avg_price = 0.0, 0.0
        elif (position > 0) != (direction > 0):  # flipped through zero
            avg_price = price
    return realized, position, avg_price


def reconcile(
    initial: float,
    fills: pd.DataFrame,
    last_close: float,
    slippage: float,
    borrow: float,
    engine_equity: float,
    funding: float = 0.0,
    liquidation_penalty: float = 0.0,
    gas: float = 0.0,
) -> Reconciliation:
    realized, position, avg_price = realized_from_fills(fills)
    unrealized = position * (last_close - avg_price)
    commissions = float(fills["commission"].sum()) if len(fills) else 0.0
    rebuilt = (
        initial + realized + unrealized - commissions - gas - slippage - borrow - funding - liquidation_penalty
    )
    return Reconciliation(
        initial=initial,
        realized_pnl=realized,
        unrealized_pnl=unrealized,
        commissions=commissions,
        slippage=slippage,
        borrow=borrow,
        rebuilt_equity=rebuilt,
        engine_equity=engine_equity,
        funding=funding,
        liquidation_penalty=liquidation_penalty,
        gas=gas,
    )
