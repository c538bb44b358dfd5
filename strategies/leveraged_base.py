"""What every lbml leveraged strategy shares: one position, its orders, its liquidation guard.

A subclass decides when to enter and exit; this base keeps the state nautilus events imply (entry
time, which orders of which intent are live: ``lbml.engine.order_state.LiveOrders``) and the
``LiquidationGuard`` (when the scenario has a leverage model) in step with fills and position
events, the same way in backtests and live. Every order goes out through ``submit_tracked``.
"""

from decimal import Decimal

from lbml.engine.exit_reasons import OTHER, reason_of, reason_tag
from lbml.engine.liquidation import LiquidationGuard
from lbml.engine.order_state import Intent, LiveOrders
from lbml.engine.position_state import open_position
from lbml.nautilus.clock import minutes_to_ns
from lbml.nautilus.model import Bar, ClientOrderId, OrderSide, OrderType, TimeInForce, make_qty
from lbml.nautilus.trading import OrderList, Strategy, cash_balance

_STOP_TYPES = (OrderType.STOP_MARKET, OrderType.TRAILING_STOP_MARKET)


class LeveragedPositionStrategy(Strategy):
    """Base for strategies holding one leveraged position in ``config.instrument_id``.

    The config needs ``instrument_id``, ``bar_type``, ``max_holding_bars``, ``bar_minutes``,
    ``max_participation`` and ``leverage`` (a ``LeverageSpec`` or None).
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self._max_hold_ns = minutes_to_ns(config.max_holding_bars * config.bar_minutes)
        self._instrument = None
        self._guard: LiquidationGuard | None = None
        self._entry_ts: int | None = None
        self.orders_live = LiveOrders()  # fills arrive asynchronously live: never decide on stale state
        self._last_exit_reason: str | None = None
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
        self._drop_closed_orders()
        self._last_volume = bar.volume.as_double()
        if self._guard is not None and self._entry_ts is not None:
            self._guard.on_bar(bar)

    # -- orders ----------------------------------------------------------------------------------
    @property
    def _busy(self) -> bool:
        return self.orders_live.in_flight

    def _may_enter(self) -> bool:
        return self.orders_live.may_enter(self._is_flat())

    def _is_flat(self) -> bool:
        position = open_position(self.cache, self.config.instrument_id)
        return position is None or self._is_dust(position)

    def _is_dust(self, position) -> bool:
        """A remainder below the smallest order the venue takes (size step or ``min_notional``) is flat."""
        qty = position.quantity
        return qty < self._instrument.min_quantity or qty.as_double() * position.avg_px_open < self.config.min_notional

    def submit_tracked(self, order, intent: Intent) -> None:
        """Submit ``order`` and track it as ``intent`` until it is done."""
        self.orders_live.add(order.client_order_id.value, intent, order.quantity.as_decimal())
        self.submit_order(order)

    def submit_bracket(self, bracket: OrderList) -> None:
        """Submit an entry bracket (entry, stop-loss, take-profit), each leg tracked by its intent."""
        entry, *legs = bracket.orders
        self.orders_live.add(entry.client_order_id.value, Intent.ENTRY, entry.quantity.as_decimal())
        for leg in legs:
            intent = Intent.BRACKET_STOP if leg.order_type in _STOP_TYPES else Intent.BRACKET_TAKE
            self.orders_live.add(leg.client_order_id.value, intent, leg.quantity.as_decimal())
        self.submit_order_list(bracket)

    def close_position(self, reason: str) -> None:
        """Cancel the working orders and close the open position at market, tagged with ``reason``
        (one of ``lbml.engine.exit_reasons``)."""
        iid = self.config.instrument_id
        self.cancel_all_orders(iid)
        position = open_position(self.cache, iid)
        if position is None:
            return
        order = self.order_factory.market(
            instrument_id=iid,
            order_side=OrderSide.BUY if position.is_short else OrderSide.SELL,
            quantity=position.quantity,
            time_in_force=TimeInForce.GTC,
            reduce_only=True,
            tags=[reason_tag(reason)],
        )
        self.submit_tracked(order, Intent.EXIT)

    def _drop_closed_orders(self) -> None:
        # Safety net: an order closed without an event reaching us (e.g. a bracket leg the venue
        # dropped with its rejected parent) must not block entries forever.
        for order_id in self.orders_live.live():
            order = self.cache.order(ClientOrderId(order_id))
            if order is None or order.is_closed:
                self.orders_live.done(order_id)

    # -- order events ----------------------------------------------------------------------------
    def on_order_filled(self, event) -> None:
        self.orders_live.filled(event.client_order_id.value, event.last_qty.as_decimal())
        order = self.cache.order(event.client_order_id)
        self._last_exit_reason = reason_of(order.tags if order is not None else None) or self._last_exit_reason
        if self._guard is not None:
            self._guard.on_fill(event)

    def on_order_updated(self, event) -> None:
        order = self.cache.order(event.client_order_id)
        filled = order.filled_qty.as_decimal() if order is not None else 0
        self.orders_live.updated(event.client_order_id.value, event.quantity.as_decimal(), filled)

    def on_order_rejected(self, event) -> None:
        self.orders_live.done(event.client_order_id.value)

    def on_order_denied(self, event) -> None:
        self.orders_live.done(event.client_order_id.value)

    def on_order_canceled(self, event) -> None:
        self.orders_live.done(event.client_order_id.value)

    def on_order_expired(self, event) -> None:
        self.orders_live.done(event.client_order_id.value)

    # -- position events -------------------------------------------------------------------------
    def on_position_opened(self, event) -> None:
        self._entry_ts = event.ts_event
        if self._guard is not None:
            self._guard.on_position_opened()

    def on_position_changed(self, event) -> None:
        position = open_position(self.cache, self.config.instrument_id)
        if position is not None and self._is_dust(position) and not self._busy:
            # An exit left dust: close it with the same reason (a venue that refuses an order this
            # small leaves it, and the strategy treats it as flat).
            self.close_position(self._last_exit_reason or OTHER)
            return
        if self._guard is not None:
            self._guard.refresh(None)

    def on_position_closed(self, event) -> None:
        self._entry_ts = None
        if self._guard is not None:
            self._guard.on_position_closed()
        self._on_flat()
        # Cancel the surviving bracket leg or liquidation order, if any.
        self.cancel_all_orders(self.config.instrument_id)

    def _on_flat(self) -> None:
        """Hook: the position has just closed."""

    def _held_too_long(self, bar: Bar) -> bool:
        return self._entry_ts is not None and bar.ts_event - self._entry_ts >= self._max_hold_ns

    def _entry_quantity(self, notional: float, price: float):
        """``notional / price`` in base units, rounded down, at most ``max_participation`` × the last bar's volume.

        Zero when that is dust (``_is_dust``): a position the strategy would treat as flat and close
        at its first change (an entry filled in two parts was closed a bar after it opened).
        """
        # Before the strategy has seen a bar (a prediction can arrive first) the volume is unknown:
        # no entry, rather than an uncapped one.
        volume = self._last_volume if self._last_volume is not None else 0.0
        units = min(notional / price, self.config.max_participation * volume)
        quantity = make_qty(self._instrument, Decimal(str(units)), round_down=True)
        if quantity < self._instrument.min_quantity or quantity.as_double() * price < self.config.min_notional:
            return make_qty(self._instrument, 0)
        return quantity

    def _equity(self) -> float:
        account = self.portfolio.account(self.config.instrument_id.venue)
        return cash_balance(account)
