"""Read a ``PositionState`` (open position + account cash) from a nautilus cache: one helper for the
strategy-side liquidation guard, the recorder and the venue-side interest module."""

from lbml.leverage.model import PositionState
from lbml.nautilus.model import PositionSide
from lbml.nautilus.trading import cash_balance


def open_position(cache, instrument_id):
    positions = cache.positions_open(instrument_id=instrument_id)
    return positions[0] if positions else None


def position_state(cache, account, instrument_id, entry_balance: float | None) -> PositionState | None:
    """Return the state of the open position on ``instrument_id`` (``None`` when flat)."""
    position = open_position(cache, instrument_id)
    if position is None or account is None:
        return None
    balance = cash_balance(account)
    return PositionState(
        long=position.side == PositionSide.LONG,
        quantity=position.quantity.as_double(),
        avg_price=position.avg_px_open,
        balance=balance,
        entry_balance=balance if entry_balance is None else entry_balance,
    )
