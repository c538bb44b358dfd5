"""The leverage model a scenario chooses, shared by the venue side (interest, penalties) and the
strategy side (liquidation orders), so backtest and live run the same code.

``LeverageSpec`` is the frozen component config; ``build_leverage_model`` turns it into an
``ExchangeMarginModel`` or an ``AaveLendingModel``. Both answer the same questions about a
``PositionState`` (one open position plus the account cash): liquidation price, size of the
liquidation order, health, penalty of a liquidation fill and debt that accrues interest.
"""

from dataclasses import dataclass

from lbml.leverage import lending, margin
from lbml.nautilus.trading import NautilusConfig

LIQUIDATION_TAG = "LIQUIDATION"


class LeverageSpec(NautilusConfig, frozen=True):
    """Leverage model parameters (``model``: ``exchange_margin`` or ``aave_lending``)."""

    model: str = "exchange_margin"
    margin_leverage: float = 5.0
    maintenance_margin_rate: float = 0.005
    liquidation_fee: float = 0.005
    ltv: float = 0.70
    liquidation_threshold: float = 0.75
    liquidation_bonus: float = 0.10
    close_factor: float = 0.5
    full_close_hf: float = 0.95


@dataclass(frozen=True)
class PositionState:
    """One open position and the account cash (``entry_balance``: cash right after it opened)."""

    long: bool
    quantity: float
    avg_price: float
    balance: float
    entry_balance: float

    def notional(self, price: float) -> float:
        return self.quantity * price


class ExchangeMarginModel:
    """Isolated margin: the position posts notional / leverage; liquidated in full at maintenance."""

    name = "exchange_margin"

    def __init__(self, params: margin.MarginParams) -> None:
        self.params = params

    @property
    def max_exposure(self) -> float:
        return min(self.params.leverage, self.params.max_leverage)

    @property
    def max_short_exposure(self) -> float:
        return self.max_exposure

    def isolated(self, s: PositionState) -> margin.IsolatedPosition:
        return margin.IsolatedPosition(
            long=s.long,
            quantity=s.quantity,
            avg_price=s.avg_price,
            margin=margin.initial_margin(s.quantity, s.avg_price, self.params),
            extra=s.balance - s.entry_balance,
        )

    def liquidation_price(self, s: PositionState) -> float | None:
        price = margin.liquidation_price(self.isolated(s), self.params)
        return price if price > 0.0 else None

    def liquidation_quantity(self, s: PositionState) -> float:
        return s.quantity

    def health(self, s: PositionState, price: float) -> float:
        return margin.margin_ratio(self.isolated(s), price, self.params)

    def full_close_after(self, s: PositionState, fill_price: float) -> bool:
        return False  # the first liquidation already closes everything

    def penalty(self, long: bool, quantity: float, price: float) -> float:
        return margin.liquidation_penalty(quantity, price, self.params)

    def debt_value(self, s: PositionState, price: float) -> float:
        return 0.0  # a perpetual pays funding, not borrow interest

    def capped_penalty(self, quantity: float, price: float, peak_qty: float, avg_open: float, realized: float) -> float:
        """The fee, but never more than the isolated margin left after the close (the insurance fund
        takes what remains; a trader does not lose more than the position's margin to the fee)."""
        margin_left = peak_qty * avg_open / self.max_exposure + realized
        return max(0.0, min(self.penalty(True, quantity, price), margin_left))


class AaveLendingModel:
    """Aave-style collateral/debt with health factor, close factor and liquidation bonus."""

    name = "aave_lending"

    def __init__(self, params: lending.LendingParams) -> None:
        self.params = params

    @property
    def max_exposure(self) -> float:
        return self.params.max_leverage

    @property
    def max_short_exposure(self) -> float:
        return self.params.max_short_leverage

    @staticmethod
    def lending_state(s: PositionState) -> lending.LendingState:
        return lending.LendingState(long=s.long, quantity=s.quantity, avg_price=s.avg_price, balance=s.balance)

    def liquidation_price(self, s: PositionState) -> float | None:
        return lending.liquidation_price(self.lending_state(s), self.params)

    def liquidation_quantity(self, s: PositionState) -> float:
        """Collateral seized by one liquidation call at HF = 1 with the normal close factor."""
        state = self.lending_state(s)
        price = lending.liquidation_price(state, self.params)
        if price is None or price <= 0.0:
            return s.quantity
        repaid = self.params.close_factor * state.debt_value(price)
        per_unit = (1.0 + self.params.liquidation_bonus) if s.long else 1.0
        return min(s.quantity, repaid * per_unit / price)

    def health(self, s: PositionState, price: float) -> float:
        return lending.health_factor(self.lending_state(s), price, self.params)

    def full_close_after(self, s: PositionState, fill_price: float) -> bool:
        """True when the pre-liquidation health at the fill price allows a 100% close factor."""
        return self.health(s, fill_price) < self.params.full_close_hf

    def penalty(self, long: bool, quantity: float, price: float) -> float:
        bonus = self.params.liquidation_bonus
        repaid = quantity * price / (1.0 + bonus) if long else quantity * price
        return repaid * bonus

    def debt_value(self, s: PositionState, price: float) -> float:
        return max(0.0, self.lending_state(s).debt_value(price))


LeverageModel = ExchangeMarginModel | AaveLendingModel


def build_leverage_model(spec: LeverageSpec) -> LeverageModel:
    """Return the model ``spec.model`` names."""
    if spec.model == "exchange_margin":
        return ExchangeMarginModel(
            margin.MarginParams(
                leverage=spec.margin_leverage,
                max_leverage=max(spec.margin_leverage, 1.0),
                maintenance_margin_rate=spec.maintenance_margin_rate,
                liquidation_fee=spec.liquidation_fee,
            )
        )
    if spec.model == "aave_lending":
        return AaveLendingModel(
            lending.LendingParams(
                ltv=spec.ltv,
                liquidation_threshold=spec.liquidation_threshold,
                liquidation_bonus=spec.liquidation_bonus,
                close_factor=spec.close_factor,
                full_close_hf=spec.full_close_hf,
            )
        )
    raise ValueError(f"unknown leverage model {spec.model!r}")


def leverage_spec(cfg) -> LeverageSpec | None:
    """The ``LeverageSpec`` of a scenario's ``[leverage]`` section (None for ``model = \"none\"``)."""
    if cfg.model == "none":
        return None
    return LeverageSpec(
        model=cfg.model,
        margin_leverage=cfg.margin_leverage,
        maintenance_margin_rate=cfg.maintenance_margin_rate,
        liquidation_fee=cfg.liquidation_fee,
        ltv=cfg.ltv,
        liquidation_threshold=cfg.liquidation_threshold,
        liquidation_bonus=cfg.liquidation_bonus,
        close_factor=cfg.close_factor,
        full_close_hf=cfg.full_close_hf,
    )
