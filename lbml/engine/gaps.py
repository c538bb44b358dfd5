"""Gap-through: stop orders fill at the worse of the trigger and the first price beyond it.

With bar execution nautilus fills a triggered STOP_MARKET at its trigger price (± one tick) even when
the bar opened beyond the trigger, i.e. when the market gapped through the stop. On a real venue the
order fills at the first price available, the gap's open. This module remembers the last price
each market event opened at (the bar's open, or the trade tick's price) and, for every stop fill
that is better than that price, debits the difference × quantity as slippage. The ledger is part
of the ``slippage`` cost and of the equity reconciliation.
"""

from lbml.engine.costs import FillChargeModule
from lbml.nautilus.backtest import SimulationModuleConfig
from lbml.nautilus.model import Bar, OrderFilled, OrderSide, OrderType, TradeTick

_STOPS = (OrderType.STOP_MARKET, OrderType.TRAILING_STOP_MARKET)


class GapThroughConfig(SimulationModuleConfig, frozen=True):
    pass


class GapThroughModule(FillChargeModule):
    """Charges stop fills down (or up) to the open of a market that gapped through the trigger."""

    def __init__(self, config: GapThroughConfig | None = None) -> None:
        super().__init__(config or GapThroughConfig())
        self.events: list[dict] = []
        self._open: dict = {}

    def pre_process(self, data) -> None:
        if isinstance(data, Bar):
            self._open[data.bar_type.instrument_id] = data.open.as_double()
        elif isinstance(data, TradeTick):
            self._open[data.instrument_id] = data.price.as_double()

    def charge_for(self, fill: OrderFilled) -> float:
        if fill.order_type not in _STOPS:
            return 0.0
        ref = self._open.get(fill.instrument_id)
        order = self.venue_order(fill.client_order_id)
        if ref is None or order is None or order.trigger_price is None:
            return 0.0
        trigger = order.trigger_price.as_double()
        px = fill.last_px.as_double()
        qty = fill.last_qty.as_double()
        if fill.order_side == OrderSide.SELL and ref < trigger and ref < px:
            extra = qty * (px - ref)
        elif fill.order_side == OrderSide.BUY and ref > trigger and ref > px:
            extra = qty * (ref - px)
        else:
            return 0.0
        self.events.append({"ts": fill.ts_event, "order_id": fill.client_order_id.value, "fill_price": px,
                            "gap_price": ref, "trigger": trigger, "quantity": qty, "cost": extra})
        return extra

    def log_diagnostics(self, logger) -> None:
        logger.info(f"gap-through: {self.ledger.total:.2f} over {len(self.events)} stop fills")

    def reset(self) -> None:
        super().reset()
        self.events = []
        self._open = {}
