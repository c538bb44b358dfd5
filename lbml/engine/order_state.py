"""Which of a strategy's orders are live, and what each one is for.

A single "an order is in flight" flag cannot say *which* order it waits for: a liquidation stop
rejected after the position went flat cleared it while the next entry was still on its way, and
the strategy entered twice (6.1x against a 3x cap on ``btc_perp_funding``, 2025-06-21 02:19-02:22).
``LiveOrders`` keeps every submitted order by client order id with its ``Intent`` and its unfilled
quantity until the order is done (filled in full, rejected, denied, canceled or expired), so the
strategy asks precise questions: is an entry or an exit on its way? May a new entry go out?

It is plain Python driven by the ``on_order_*`` events (``lbml`` strategies forward them), the same
in backtests and live, and small enough to be checked against random event sequences.
"""

from decimal import Decimal
from enum import Enum


class Intent(Enum):
    """What an order is for."""

    ENTRY = "entry"
    EXIT = "exit"
    BRACKET_STOP = "bracket_stop"
    BRACKET_TAKE = "bracket_take"
    LIQUIDATION = "liquidation"


#: Intents that change the position on purpose; while one is live the strategy decides nothing new.
IN_FLIGHT = (Intent.ENTRY, Intent.EXIT)


class LiveOrders:
    """Live orders by client order id: intent and unfilled quantity."""

    def __init__(self) -> None:
        self._intent: dict[str, Intent] = {}
        self._leaves: dict[str, Decimal] = {}

    def add(self, order_id: str, intent: Intent, quantity: Decimal) -> None:
        """Track a submitted order of ``quantity``."""
        if order_id in self._intent:
            raise ValueError(f"order {order_id} is already tracked")
        self._intent[order_id] = intent
        self._leaves[order_id] = Decimal(quantity)

    def filled(self, order_id: str, quantity: Decimal) -> None:
        """A fill of ``quantity``; the order is done when nothing is left."""
        if order_id not in self._leaves:
            return
        self._leaves[order_id] -= Decimal(quantity)
        if self._leaves[order_id] <= 0:
            self.done(order_id)

    def updated(self, order_id: str, quantity: Decimal, filled: Decimal) -> None:
        """The order was modified to ``quantity`` in total, ``filled`` of it already filled."""
        if order_id in self._leaves:
            self._leaves[order_id] = Decimal(quantity) - Decimal(filled)
            if self._leaves[order_id] <= 0:
                self.done(order_id)

    def done(self, order_id: str) -> None:
        """The order is closed (rejected, denied, canceled, expired or filled)."""
        self._intent.pop(order_id, None)
        self._leaves.pop(order_id, None)

    def live(self, *intents: Intent) -> list[str]:
        """Client order ids of the live orders with one of ``intents`` (all when none given)."""
        return [oid for oid, intent in self._intent.items() if not intents or intent in intents]

    def intent(self, order_id: str) -> Intent | None:
        return self._intent.get(order_id)

    @property
    def in_flight(self) -> bool:
        """An entry or an exit is on its way: wait for it before deciding anything."""
        return any(intent in IN_FLIGHT for intent in self._intent.values())

    def may_enter(self, flat: bool) -> bool:
        """A new entry may go out: the position is flat and no order of any intent is live.

        Stricter than "no entry or exit in flight": a stale bracket leg or liquidation order of the
        previous position (reduce-only, cancel pending) must not meet the next position.
        """
        return flat and not self._intent

    def __len__(self) -> int:
        return len(self._intent)
