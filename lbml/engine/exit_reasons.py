"""Why a position closed, carried by the closing order's tag (the same tags in backtests and live).

The strategy tags every order that can close a position with its reason in upper case
(``STOP_LOSS``, ``MAX_HOLDING_TIME``, ``LIQUIDATION``...); the run recorder reads the tag of the
order that closed each position back into the ``exit_reason`` column of ``trades.csv`` and
``fills.csv``. A position still open when the data ends is marked at the last close as
``end_of_data``.
"""

STOP_LOSS = "stop_loss"
TAKE_PROFIT = "take_profit"
TRAILING_STOP = "trailing_stop"
MAX_HOLDING_TIME = "max_holding_time"
OPPOSITE_SIGNAL = "opposite_signal"
LIQUIDATION = "liquidation"
END_OF_DATA = "end_of_data"
OTHER = "other"  # closed by an order without a reason tag (none of lbml's strategies sends one)

EXIT_REASONS = (STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, MAX_HOLDING_TIME, OPPOSITE_SIGNAL, LIQUIDATION, END_OF_DATA)


def reason_tag(reason: str) -> str:
    """The order tag of ``reason`` (``"max_holding_time"`` → ``"MAX_HOLDING_TIME"``)."""
    return reason.upper()


def reason_of(tags) -> str | None:
    """The exit reason an order's ``tags`` carry, or None (an entry)."""
    for tag in tags or ():
        reason = tag.lower()
        if reason in EXIT_REASONS:
            return reason
    return None
