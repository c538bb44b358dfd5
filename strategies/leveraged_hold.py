"""LeveragedHold: a constant-leverage long (or short), re-opened after each holding period.

The stress-test baseline for the leverage models: it ignores predictions and holds
``max_leverage × max_position_fraction`` times equity (capped by the leverage model), so a scenario
shows what a leveraged position does through a market move, with the same venue, costs and
liquidation guard as ``KellyLeverage``. No stop-loss: liquidation is the only protection.
"""

from lbml.cost_model import CostModel
from lbml.engine.exit_reasons import MAX_HOLDING_TIME
from lbml.engine.order_state import Intent
from lbml.leverage.model import LeverageSpec
from lbml.nautilus.model import Bar, BarType, InstrumentId, OrderSide, TimeInForce
from lbml.nautilus.trading import StrategyConfig
from lbml.pricing import position_caps
from lbml.sizing import Payoff
from strategies.leveraged_base import LeveragedPositionStrategy


class LeveragedHoldConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    max_leverage: float = 3.0
    max_position_fraction: float = 1.0
    max_holding_bars: int = 1440
    bar_minutes: int = 1
    short: bool = False
    leverage: LeverageSpec | None = None
    costs: CostModel | None = None  # entries are sized net of their own costs
    max_participation: float = 1.0  # an entry takes at most this share of the last bar's volume
    # Accepted for interface parity with KellyLeverageConfig (the scenario passes them); unused.
    kelly_fraction: float = 0.25
    min_notional: float = 10.0
    stop_loss_pct: float = 0.01
    take_profit_pct: float = 0.015
    payoff: Payoff | None = None
    sigma_1m: float = 0.0
    probability_shrinkage: float = 1.0
    probability_n_eff: float = 0.0
    trailing_stop: bool = False
    ev_margin: float = 0.0


class LeveragedHold(LeveragedPositionStrategy):
    """Holds a constant leveraged exposure, closing and re-opening every ``max_holding_bars``."""

    trades_predictions = False  # ignores the model: the edge gate does not apply (lbml.research.gate)

    def __init__(self, config: LeveragedHoldConfig) -> None:
        super().__init__(config)
        long_cap, short_cap = position_caps(config.max_leverage, config.max_position_fraction, config.leverage)
        self._exposure = short_cap if config.short else long_cap
        self._settling = False  # the bar after a close: let the venue book its charges first

    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if self._busy:
            return
        if self._settling:
            self._settling = False
            return
        if self._may_enter():
            self._enter(bar.close.as_double())
        elif self._held_too_long(bar):
            self.close_position(MAX_HOLDING_TIME)

    def _on_flat(self) -> None:
        self._settling = True

    def _enter(self, price: float) -> None:
        costs = self.config.costs
        equity = self._equity()
        notional = costs.entry_notional(self._exposure, equity) if costs is not None else self._exposure * equity
        if notional < self.config.min_notional or price <= 0.0:
            return
        quantity = self._entry_quantity(notional, price)
        if quantity.as_double() <= 0.0:
            return
        order = self.order_factory.market(
            instrument_id=self.config.instrument_id,
            order_side=OrderSide.SELL if self.config.short else OrderSide.BUY,
            quantity=quantity,
            time_in_force=TimeInForce.GTC,
        )
        self.submit_tracked(order, Intent.ENTRY)
