"""More venue cost modules: volatility-proportional slippage and a per-transaction gas cost.

- ``VolatilitySlippageModule`` charges ``k × σ`` of every taker fill's notional, where σ is an
  exponentially weighted standard deviation of one-minute log returns known *before* the fill
  (sampled from the bars, or from the last trade of each minute when the venue sees ticks).
- ``GasModule`` charges a fixed amount of the account currency per fill (a DEX transaction).

Both debit the venue account (``VenueModule.adjust_balance``) and keep a ledger; ``slippage_module`` picks the
slippage model a scenario's ``[costs]`` asks for.
"""

import math

from lbml.engine.costs import FillChargeModule, SlippageConfig, SlippageModule
from lbml.nautilus.backtest import SimulationModuleConfig
from lbml.nautilus.clock import NS_PER_MINUTE
from lbml.nautilus.model import Bar, LiquiditySide, OrderFilled, TradeTick


class VolatilitySlippageConfig(SimulationModuleConfig, frozen=True):
    k: float = 0.5  # slippage = k × σ(1-minute log return)
    halflife_minutes: float = 60.0
    floor_bps: float = 0.0


class VolatilitySlippageModule(FillChargeModule):
    """Charges taker fills ``k × σ_1m`` of their notional (σ known before the fill)."""

    def __init__(self, config: VolatilitySlippageConfig) -> None:
        super().__init__(config)
        self._k = config.k
        self._alpha = 1.0 - 0.5 ** (1.0 / config.halflife_minutes)
        self._floor = config.floor_bps / 1e4
        self._reset_state()

    def _reset_state(self) -> None:
        self._var: float | None = None
        self._prev_close: float | None = None
        self._minute = -1
        self._last = 0.0

    @property
    def sigma(self) -> float:
        return math.sqrt(self._var) if self._var is not None else 0.0

    def _update(self, close: float) -> None:
        if self._prev_close is not None and close > 0 and self._prev_close > 0:
            r2 = math.log(close / self._prev_close) ** 2
            self._var = r2 if self._var is None else (1 - self._alpha) * self._var + self._alpha * r2
        self._prev_close = close

    def pre_process(self, data) -> None:
        if isinstance(data, Bar):
            self._update(data.close.as_double())
        elif isinstance(data, TradeTick):
            minute = data.ts_event // NS_PER_MINUTE
            if minute != self._minute:
                if self._minute >= 0:
                    self._update(self._last)
                self._minute = minute
            self._last = data.price.as_double()

    def charge_for(self, fill: OrderFilled) -> float:
        if fill.liquidity_side != LiquiditySide.TAKER:
            return 0.0
        rate = max(self._floor, self._k * self.sigma)
        return fill.last_qty.as_double() * fill.last_px.as_double() * rate

    def log_diagnostics(self, logger) -> None:
        logger.info(f"volatility slippage: {self.ledger.total:.2f}")

    def reset(self) -> None:
        super().reset()
        self._reset_state()


class GasConfig(SimulationModuleConfig, frozen=True):
    per_transaction: float = 0.0


class GasModule(FillChargeModule):
    """Charges ``per_transaction`` (account currency) for every fill."""

    def __init__(self, config: GasConfig) -> None:
        super().__init__(config)
        self._gas = config.per_transaction

    def charge_for(self, fill: OrderFilled) -> float:
        return self._gas

    def log_diagnostics(self, logger) -> None:
        logger.info(f"gas: {self.ledger.total:.2f}")


def slippage_module(rates) -> SlippageModule | VolatilitySlippageModule:
    """The slippage a ``lbml.cost_model.CostModel`` prices: fixed per taker leg, or ``k × σ`` with a floor."""
    if rates.slippage_vol_k > 0.0:
        return VolatilitySlippageModule(VolatilitySlippageConfig(k=rates.slippage_vol_k, floor_bps=rates.slippage_rate * 1e4))
    return SlippageModule(SlippageConfig(taker_bps=rates.slippage_rate * 1e4))
