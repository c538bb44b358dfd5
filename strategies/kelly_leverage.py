"""KellyLeverage: fractional-Kelly leveraged long/short trading on model predictions.

Receives ``Prediction`` messages (from ``SignalActor``) and applies the EV rule
(``lbml.sizing.decide``): the calibrated probability must clear the break-even of the trade's
payoff as the model's training priced it (``payoff``, ``lbml.pricing``) after the round trip's cost
at the size it would trade (``costs``, ``lbml.cost_model``); the size is fractional Kelly. It enters
with a market order bracketed by a stop-loss (STOP_MARKET) and a take-profit (LIMIT), closes
positions held longer than ``max_holding_bars`` and closes on a confident opposite signal. The
venue's modules charge the costs with the same rates. The same class runs in backtests and live.

Position rules: one bracketed position at a time; no resizing while it is open (its bracket legs
are sized to it); a confident opposite signal closes it, and the next prediction may open the
other side (a flip takes two decisions, never one order that crosses zero). With ``trailing_stop``
the stop-loss is a TRAILING_STOP_MARKET ``stop_loss_pct`` behind the best price. With a
``leverage`` spec a ``LiquidationGuard`` keeps a LIQUIDATION order at the model's liquidation
price, and exposure is capped at what the leverage model allows.
"""

from decimal import Decimal

from lbml.cost_model import CostModel
from lbml.engine.exit_reasons import (
    MAX_HOLDING_TIME,
    OPPOSITE_SIGNAL,
    STOP_LOSS,
    TAKE_PROFIT,
    TRAILING_STOP,
    reason_tag,
)
from lbml.engine.messages import PREDICTION_TYPE, Prediction
from lbml.leverage.model import LeverageSpec
from lbml.nautilus.custom_data import subscribe_custom
from lbml.nautilus.model import (
    Bar,
    BarType,
    InstrumentId,
    OrderSide,
    OrderType,
    TimeInForce,
    TrailingOffsetType,
    TriggerType,
    make_price,
)
from lbml.nautilus.trading import OrderList, StrategyConfig
from lbml.pricing import kelly_params
from lbml.sizing import Decision, Payoff, decide
from strategies.leveraged_base import LeveragedPositionStrategy


class KellyLeverageConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    kelly_fraction: float = 0.25
    max_leverage: float = 3.0
    max_position_fraction: float = 0.5
    min_notional: float = 10.0
    stop_loss_pct: float = 0.01
    take_profit_pct: float = 0.015
    max_holding_bars: int = 240
    bar_minutes: int = 1
    payoff: Payoff | None = None  # the model's priced payoff (lbml.pricing); None: the bracket itself
    costs: CostModel = CostModel()
    sigma_1m: float = 0.0  # typical one-minute volatility, for a volatility slippage model
    probability_shrinkage: float = 1.0
    leverage: LeverageSpec | None = None  # exchange margin / Aave lending: liquidation orders
    probability_n_eff: float = 0.0
    trailing_stop: bool = False
    ev_margin: float = 0.0
    max_participation: float = 1.0  # an entry takes at most this share of the last bar's volume


class KellyLeverage(LeveragedPositionStrategy):
    """Bracketed, Kelly-sized long/short positions from model probabilities."""

    trades_predictions = True  # the edge gate (lbml.research.gate) decides whether it may trade a model

    def __init__(self, config: KellyLeverageConfig) -> None:
        super().__init__(config)
        self.reprice(config.ev_margin, config.payoff, config.costs, config.sigma_1m)
        self.decisions: list[tuple[int, Decision]] = []  # (prediction ts, decision) of every entry

    def reprice(self, ev_margin: float, payoff: Payoff | None, costs: CostModel, sigma_1m: float) -> None:
        """Trade with a (retrained) model's EV margin and pricing from the next prediction on."""
        config = self.config
        payoff = payoff or Payoff.from_brackets(
            config.take_profit_pct, config.stop_loss_pct, config.max_holding_bars * config.bar_minutes
        )
        self._params = kelly_params(
            kelly_fraction=config.kelly_fraction,
            max_leverage=config.max_leverage,
            max_position_fraction=config.max_position_fraction,
            min_notional=config.min_notional,
            payoff=payoff,
            costs=costs,
            leverage_spec=config.leverage,
            probability_shrinkage=config.probability_shrinkage,
            probability_n_eff=config.probability_n_eff,
            ev_margin=ev_margin,
        )
        self._costs = costs
        self._sigma_1m = sigma_1m

    def on_start(self) -> None:
        super().on_start()
        if self._instrument is not None:
            subscribe_custom(self, PREDICTION_TYPE)

    # -- events ---------------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        super().on_bar(bar)
        if not self._busy and self._held_too_long(bar):
            self.close_position(MAX_HOLDING_TIME)

    def on_data(self, data) -> None:
        if not isinstance(data, Prediction) or data.instrument_id != self.config.instrument_id:
            return
        if self._busy:
            return
        flat = self._is_flat()
        if flat and not self._may_enter():
            return  # a leg or liquidation order of the last position is still live
        decision = decide(data.probability, self._params, equity=self._equity(), sigma_1m=self._sigma_1m)
        exposure = decision.exposure
        if not flat:
            held_long = self.portfolio.is_net_long(self.config.instrument_id)
            if (held_long and exposure < 0.0) or (not held_long and exposure > 0.0):
                self.close_position(OPPOSITE_SIGNAL)
            return
        if exposure == 0.0:
            return
        if self._enter(exposure, data.close):
            self.decisions.append((data.ts_event, decision))

    # -- actions ----------------------------------------------------------------------------------
    def _enter(self, exposure: float, price: float) -> bool:
        notional = self._costs.entry_notional(exposure, self._equity(), self._sigma_1m)
        if notional < self._params.min_notional or price <= 0.0:
            return False
        instrument = self._instrument
        quantity = self._entry_quantity(notional, price)
        if quantity.as_double() <= 0.0:
            return False
        long = exposure > 0.0
        sign = 1.0 if long else -1.0
        stop = price * (1.0 - sign * self.config.stop_loss_pct)
        take = price * (1.0 + sign * self.config.take_profit_pct)
        bracket: OrderList = self.order_factory.bracket(
            instrument_id=self.config.instrument_id,
            order_side=OrderSide.BUY if long else OrderSide.SELL,
            quantity=quantity,
            entry_order_type=OrderType.MARKET,
            sl_trigger_price=make_price(instrument, stop),
            tp_price=make_price(instrument, take),
            time_in_force=TimeInForce.GTC,
            sl_tags=[reason_tag(TRAILING_STOP if self.config.trailing_stop else STOP_LOSS)],
            tp_tags=[reason_tag(TAKE_PROFIT)],
            **self._trailing_kwargs(),
        )
        self.submit_bracket(bracket)
        return True

    def _trailing_kwargs(self) -> dict:
        if not self.config.trailing_stop:
            return {}
        return {
            "sl_order_type": OrderType.TRAILING_STOP_MARKET,
            "sl_trigger_type": TriggerType.LAST_PRICE,
            "sl_trailing_offset": Decimal(str(round(self.config.stop_loss_pct * 1e4, 4))),
            "sl_trailing_offset_type": TrailingOffsetType.BASIS_POINTS,
        }
