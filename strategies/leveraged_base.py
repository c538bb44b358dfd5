"""What every lbml leveraged strategy shares: one position, its liquidation guard, its lifecycle.

A subclass decides when to enter and exit; this base keeps the state nautilus events imply (entry
time, an order in flight) and the ``LiquidationGuard`` (when the scenario has a leverage model) in
step with fills and position events, the same way in backtests and live.
"""

from decimal import Decimal

from nautilus_trader.model.data import Bar
from nautilus_trader.trading.strategy import Strategy

from lbml.engine.liquidation import LiquidationGuard


class LeveragedPositionStrategy(Strategy):
    """Base for strategies holding one leveraged position in ``config.instrument_id``.

    The config needs ``instrument_id``, ``bar_type``, ``max_holding_bars``, ``bar_minutes``,
    ``max_participation`` and ``leverage`` (a ``LeverageSpec`` or None).
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self._max_hold_ns = config.max_holding_bars * config.bar_minutes * 60 * 1_000_000_000
        self._instrument = None
        self._guard: LiquidationGuard | None = None
        self._entry_ts: int | None = None
        self._busy = False  # an entry or exit is in flight: fills arrive asynchronously live
        self._last_volume: float | None = None  # the last bar's volume: entries take at most a share of it

    def on_start(self) -> None:
        self._instrument = self.cache.instrument(self.config.instrument_id)
        if self._instrument is None:
            self.log.error(f"instrument {self.config.instrument_id} not in cache")
            self.stop()
            return
        if self.config.leverage is not None:
            self._guard = LiquidationGuard(self, self._instrument, self.config.leverage)
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        self._last_volume = bar.volume.as_double()
        if self._guard is not None and self._entry_ts is not None:
            self._guard.on_bar(bar)

    def on_position_opened(self, event) -> None:
        self._entry_ts = event.ts_event
        self._busy = False
        if self._guard is not None:
            self._guard.on_position_opened()

    def on_position_changed(self, event) -> None:
        if self._guard is not None:
            self._guard.refresh(None)

    def on_order_filled(self, event) -> None:
        if self._guard is not None:
            self._guard.on_fill(event)

    def on_position_closed(self, event) -> None:
        self._entry_ts = None
        self._busy = False
        if self._guard is not None:
            self._guard.on_position_closed()
        self._on_flat()
        # Cancel the surviving bracket leg or liquidation order, if any.
        self.cancel_all_orders(self.config.instrument_id)

    def on_order_rejected(self, event) -> None:
        self._busy = False

    def on_order_denied(self, event) -> None:
        self._busy = False

    def _on_flat(self) -> None:
        """Hook: the position has just closed."""

    def _held_too_long(self, bar: Bar) -> bool:
        return self._entry_ts is not None and bar.ts_event - self._entry_ts >= self._max_hold_ns

    def _entry_quantity(self, notional: float, price: float):
        """``notional / price`` in base units, rounded down, at most ``max_participation`` × the last bar's volume."""
        units = notional / price
        if self._last_volume is not None:
            units = min(units, self.config.max_participation * self._last_volume)
        return self._instrument.make_qty(Decimal(str(units)), round_down=True)

    def _equity(self) -> float:
        account = self.portfolio.account(self.config.instrument_id.venue)
        return account.balance_total(account.base_currency).as_double()
