"""Liquidations as real engine events.

Two halves that run the same in a backtest and in paper trading:

- ``LiquidationGuard`` (composed into a strategy, because on a NETTING venue only the position's
  owner can reduce it) keeps a reduce-only STOP_MARKET order tagged ``LIQUIDATION`` resting at the
  leverage model's liquidation price, sized by the model (the close factor's share of collateral
  for Aave, the whole position on an exchange). The simulated exchange triggers it on the bar's
  (or tick's) adverse extreme and fills it at the trigger price, or at the worse open when the
  market gaps through. It re-prices the order as debt and funding move the liquidation price,
  sends a market close for the rest when the health at the fill price allows a 100% close factor,
  and liquidates at market when the price is already beyond the liquidation price.
  (Close factor and bonus follow the research notes; a 100% close is decided from the health at
  the worse of the fill price and the open of the bar the liquidation happened in.)
- ``LiquidationModule`` (a venue ``SimulationModule``) debits the penalty of every fill of a
  ``LIQUIDATION`` order (Aave: repaid × bonus; exchange: the liquidation fee) into its ledger.
  On exchange (isolated) margin it also caps what a position can lose at its margin: it runs after
  every other module, so when a position closes every charge of the closing fill (fee, slippage,
  gap-through, penalty) is booked; if the cash is then below the cash right after the entry minus
  the margin ``q·E / L`` (never below zero), the exchange's insurance fund absorbs the difference,
  credited as a negative penalty (the ledger holds penalties net of that absorption).
"""

from decimal import Decimal

from lbml.engine.costs import FillChargeModule
from lbml.engine.order_state import Intent
from lbml.engine.position_state import position_state
from lbml.leverage.model import (
    LIQUIDATION_TAG,
    ExchangeMarginModel,
    LeverageSpec,
    PositionState,
    build_leverage_model,
)
from lbml.nautilus.backtest import SimulationModuleConfig
from lbml.nautilus.model import OrderFilled, OrderSide, OrderType, TimeInForce, make_price, make_qty
from lbml.nautilus.trading import cash_balance


class LiquidationConfig(SimulationModuleConfig, frozen=True):
    leverage: LeverageSpec = LeverageSpec()


class LiquidationModule(FillChargeModule):
    """Charges the liquidation penalty of every fill of an order tagged ``LIQUIDATION``."""

    def __init__(self, config: LiquidationConfig) -> None:
        super().__init__(config)
        self._model = build_leverage_model(config.leverage)
        self._isolated = isinstance(self._model, ExchangeMarginModel)
        self.events: list[dict] = []
        self.absorbed: list[tuple[int, float]] = []  # (ts, loss beyond the margin the insurance fund took)
        self._orders: set[str] = set()
        self._reset_isolation()

    def _reset_isolation(self) -> None:
        self._filled = False
        self._entry_cash: float | None = None
        self._margin = 0.0

    def _on_fill(self, fill: OrderFilled) -> None:
        if self._isolated and fill.position_id is not None:
            position = self.venue_position(fill.position_id)
            if position is not None:  # the state before this fill: the entry's quantity and price
                self._margin = position.peak_qty.as_double() * position.avg_px_open / self._model.max_exposure
            self._filled = True
        super()._on_fill(fill)

    def process(self, ts_now: int) -> None:
        super().process(ts_now)
        if self._filled:
            self._filled = False
            self._cap_loss_at_margin(ts_now)

    def _cap_loss_at_margin(self, ts_now: int) -> None:
        account = self.venue_account()
        cash = cash_balance(account)
        if self.open_positions():
            if self._entry_cash is None:
                self._entry_cash = cash  # after the entry's fee, slippage and gas (this module runs last)
            return
        if self._entry_cash is None:
            return
        floor = max(0.0, self._entry_cash - self._margin)
        self._entry_cash = None
        if cash < floor:
            self.adjust_balance(floor - cash, account)
            self.ledger.add(ts_now, cash - floor)
            self.absorbed.append((ts_now, floor - cash))

    @property
    def n_liquidations(self) -> int:
        return len(self._orders)

    def charge_for(self, fill: OrderFilled) -> float:
        order = self.venue_order(fill.client_order_id)
        if order is None or LIQUIDATION_TAG not in (order.tags or []):
            return 0.0
        qty, px = fill.last_qty.as_double(), fill.last_px.as_double()
        long = fill.order_side == OrderSide.SELL  # selling closes a long
        penalty = self._model.penalty(long, qty, px)
        if isinstance(self._model, ExchangeMarginModel) and fill.position_id is not None:
            position = self.venue_position(fill.position_id)
            if position is not None:
                penalty = self._model.capped_penalty(
                    qty, px, position.peak_qty.as_double(), position.avg_px_open, position.realized_pnl.as_double()
                )
        self._orders.add(fill.client_order_id.value)
        self.events.append(
            {"ts": fill.ts_event, "order_id": fill.client_order_id.value, "side": "LONG" if long else "SHORT",
             "quantity": qty, "price": px, "penalty": penalty}
        )
        return penalty

    def log_diagnostics(self, logger) -> None:
        logger.info(f"liquidations: {self.n_liquidations}, penalty {self.ledger.total:.2f}")

    def reset(self) -> None:
        super().reset()
        self.events = []
        self.absorbed = []
        self._orders = set()
        self._reset_isolation()


class LiquidationGuard:
    """Keeps the owning strategy's liquidation order in line with the leverage model."""

    def __init__(self, strategy, instrument, spec: LeverageSpec) -> None:
        self._strategy = strategy
        self._instrument = instrument
        self.model = build_leverage_model(spec)
        self._order = None
        self._entry_balance: float | None = None
        self._state_at_order: PositionState | None = None
        self._check: tuple[PositionState, float, bool] | None = None

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> PositionState | None:
        s = self._strategy
        account = s.portfolio.account(self._instrument.id.venue)
        return position_state(s.cache, account, self._instrument.id, self._entry_balance)

    def on_position_opened(self) -> None:
        account = self._strategy.portfolio.account(self._instrument.id.venue)
        self._entry_balance = cash_balance(account)
        self.refresh(None)

    def on_position_closed(self) -> None:
        self._check = None
        self._entry_balance = None
        self._order = None
        self._state_at_order = None

    def is_liquidation(self, client_order_id) -> bool:
        order = self._strategy.cache.order(client_order_id)
        return order is not None and LIQUIDATION_TAG in (order.tags or [])

    # -- orders ------------------------------------------------------------------------------------
    def on_bar(self, bar) -> None:
        """Check the last liquidation against this bar, then keep the order in line (each bar)."""
        check, self._check = self._check, None
        if check is not None:
            before, fill_px, long = check
            # The fill happened inside this bar: a market that gapped through traded at the open.
            effective = min(fill_px, bar.open.as_double()) if long else max(fill_px, bar.open.as_double())
            state = self.state()
            if state is not None and self.model.full_close_after(before, effective):
                self._cancel()
                self._market_close(state, state.quantity)
                return
        self.refresh(bar.close.as_double())

    def refresh(self, last_price: float | None) -> None:
        """Place or re-price the resting liquidation order (call on position changes and each bar)."""
        state = self.state()
        if state is None:
            return
        price = self.model.liquidation_price(state)
        if price is None or price <= 0.0:
            self._cancel()
            return
        if last_price is not None and ((state.long and last_price <= price) or (not state.long and last_price >= price)):
            if self._order is not None and self._order.order_type == OrderType.MARKET and not self._order.is_closed:
                return  # a liquidation at market is already on its way
            self._cancel()
            self._market_close(state, self.model.liquidation_quantity(state))
            return
        inst = self._instrument
        trigger = make_price(inst, price)
        qty = make_qty(inst, Decimal(str(self.model.liquidation_quantity(state))), round_down=True)
        if qty.as_double() <= 0.0:
            qty = make_qty(inst, Decimal(str(state.quantity)))
        order = self._order
        if order is not None and order.is_open:
            if order.is_pending_update or order.is_pending_cancel:
                return
            if order.trigger_price != trigger or order.quantity != qty:
                if order.filled_qty.as_double() == 0.0:
                    self._strategy.modify_order(order, quantity=qty, trigger_price=trigger)
                    self._state_at_order = state
            return
        if order is not None and not order.is_closed:
            return  # sent, not yet accepted (or not yet sent): one liquidation order at a time
        self._submit_stop(state, trigger, qty)

    def on_fill(self, fill: OrderFilled) -> None:
        """After a liquidation fill: remember it; the bar it happened in decides on a 100% close.

        (Order events reach the strategy before the position is updated, so the rest of the
        position is closed from ``on_bar``, with the worse of the fill price and the bar's open.)
        """
        if not self.is_liquidation(fill.client_order_id):
            return
        before = self._state_at_order
        self._order = None
        if before is not None:
            self._check = (before, fill.last_px.as_double(), before.long)

    def _submit_stop(self, state: PositionState, trigger, qty) -> None:
        s = self._strategy
        order = s.order_factory.stop_market(
            instrument_id=self._instrument.id,
            order_side=OrderSide.SELL if state.long else OrderSide.BUY,
            quantity=qty,
            trigger_price=trigger,
            time_in_force=TimeInForce.GTC,
            reduce_only=True,
            tags=[LIQUIDATION_TAG],
        )
        self._order = order
        self._state_at_order = state
        s.submit_tracked(order, Intent.LIQUIDATION)

    def _market_close(self, state: PositionState, quantity: float) -> None:
        s = self._strategy
        qty = make_qty(self._instrument, Decimal(str(min(quantity, state.quantity))))
        if qty.as_double() <= 0.0:
            return
        order = s.order_factory.market(
            instrument_id=self._instrument.id,
            order_side=OrderSide.SELL if state.long else OrderSide.BUY,
            quantity=qty,
            time_in_force=TimeInForce.GTC,
            reduce_only=True,
            tags=[LIQUIDATION_TAG],
        )
        self._order = order
        self._state_at_order = state
        s.submit_tracked(order, Intent.LIQUIDATION)

    def _cancel(self) -> None:
        order = self._order
        if order is not None and order.is_open and not order.is_pending_cancel:
            self._strategy.cancel_order(order)
        self._order = None
