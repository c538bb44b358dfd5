"""Keeps the nautilus cache small while a backtest runs, so the cost per bar stays flat.

With a NETTING account every round trip reuses one position id, and nautilus indexes every order
ever filled against it: each fill (``orders_for_position``) and each order-list submission then
walks all of them, so a run slows down quadratically (measured: 1.4 ms per bar after 20k bars with
~20 round trips per 100 bars). Purging closed orders and positions removes them from those
indexes. ``RunRecorder`` keeps what the reports need, so results are unchanged (tested).

Purging happens only on a flat book with no open order: nautilus 1.221 keeps a position's order
index when it purges a closed order whose own ``position_id`` is unset (e.g. a cancelled bracket
leg); if that NETTING position were still open, its next fill would look the purged order up and
raise ``KeyError``. Purging the closed position clears its whole index.

Nor while a modify or cancel is on its way to the venue (issue #18 item 9): the liquidation guard
re-priced its stop on a bar whose exit then filled; the venue cancelled the stop with the position,
the stop was purged at the next bar, and the modify, arriving after the purge, was rejected for an
order nautilus could no longer find: ``Cannot apply event to any order ... not found in the cache``,
78 times in the perpetual's backtest. ``CachePurger`` follows the order events: a modify is
outstanding from ``OrderPendingUpdate`` to ``OrderUpdated`` or ``OrderModifyRejected``, a cancel
from ``OrderPendingCancel`` to ``OrderCanceled`` or ``OrderCancelRejected``.
"""

from lbml.nautilus.clock import component_now_ns
from lbml.nautilus.compat import purge_order_lists
from lbml.nautilus.model import (
    Bar,
    BarType,
    OrderCanceled,
    OrderCancelRejected,
    OrderModifyRejected,
    OrderPendingCancel,
    OrderPendingUpdate,
    OrderUpdated,
)
from lbml.nautilus.trading import Actor, ActorConfig, PositiveInt


class CachePurgerConfig(ActorConfig, frozen=True):
    bar_type: BarType
    every_bars: PositiveInt = 1


class CachePurger(Actor):
    """Purges closed orders and positions at bar closes when the book is flat and no modify or
    cancel is on its way to the venue."""

    def __init__(self, config: CachePurgerConfig) -> None:
        super().__init__(config)
        self._every = config.every_bars
        self._bars = 0
        self.n_purges = 0
        self.n_deferred = 0  # purges put off because a modify or cancel was on its way
        self._modifying: set = set()  # client order ids with a modify awaiting the venue's answer
        self._canceling: set = set()

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)
        self.msgbus.subscribe(topic="events.order.*", handler=self._on_order_event)

    def _on_order_event(self, event) -> None:
        if isinstance(event, OrderPendingUpdate):
            self._modifying.add(event.client_order_id)
        elif isinstance(event, (OrderUpdated, OrderModifyRejected)):
            self._modifying.discard(event.client_order_id)
        elif isinstance(event, OrderPendingCancel):
            self._canceling.add(event.client_order_id)
        elif isinstance(event, (OrderCanceled, OrderCancelRejected)):
            self._canceling.discard(event.client_order_id)

    @property
    def commands_in_flight(self) -> int:
        return len(self._modifying) + len(self._canceling)

    def on_bar(self, bar: Bar) -> None:
        self._bars += 1
        if self._bars < self._every:
            return
        if self.purge(component_now_ns(self)):
            self._bars = 0

    def purge(self, ts_now: int) -> bool:
        """Purge if the book is flat and nothing is on its way to the venue; return whether it did."""
        if self.commands_in_flight:
            self.n_deferred += 1
            return False
        if not purge_when_flat(self.cache, ts_now):
            return False
        self.n_purges += 1
        return True


def purge_when_flat(cache, ts_now: int) -> bool:
    """Purge closed orders/positions if nothing is open and something is closed; return whether it did."""
    if cache.positions_open_count() or cache.orders_open_count():
        return False
    if not cache.orders_closed_count() and not cache.positions_closed_count():
        return False
    cache.purge_closed_orders(ts_now, 0)
    purge_order_lists(cache)  # nautilus 1.221 keeps a purged order's list (and so the order) forever
    cache.purge_closed_positions(ts_now, 0)
    cache.purge_account_events(ts_now, 0)  # one AccountState per fill otherwise piles up
    return True
