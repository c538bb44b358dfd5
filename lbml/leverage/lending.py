"""Aave-style leveraged lending: collateral, debt, health factor, liquidation (pure functions).

A leveraged long deposits the base asset as collateral and borrows the quote (stablecoin);
a leveraged short deposits the quote (own equity plus the sale proceeds) and borrows the base.
With collateral value ``Cv`` and debt value ``Dv`` (both in quote at the oracle price):

    HF = Cv · LT / Dv                        (liquidatable when HF < 1)

A liquidator repays up to ``close_factor`` of the debt (all of it when HF < ``full_close_hf``)
and seizes repaid × (1 + bonus) of collateral: the position loses repaid × bonus.

On a nautilus MARGIN account the same quantities follow from the account balance ``B`` (cash,
net of everything charged so far) and the open position (``q`` base units at average price ``E``):

- long:  collateral = q units of base, debt = q·E − B (quote)      → P_liq = (q·E − B) / (q·LT)
- short: collateral = B + q·E (quote), debt = q units of base      → P_liq = (B + q·E)·LT / q

so interest and fees, which reduce ``B``, raise a long's debt exactly as accrued interest does.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class LendingParams:
    """Reserve parameters of the collateral asset (defaults: Aave v3 BNB Chain WBNB)."""

    ltv: float = 0.70
    liquidation_threshold: float = 0.75
    liquidation_bonus: float = 0.10
    close_factor: float = 0.5
    full_close_hf: float = 0.95

    @property
    def max_leverage(self) -> float:
        """Leverage reachable by looping deposits and borrows at the LTV: 1 / (1 − LTV)."""
        return 1.0 / (1.0 - self.ltv)

    @property
    def max_short_leverage(self) -> float:
        """Short exposure the LTV allows: borrowed base ≤ LTV × (equity + proceeds) ⇔ L ≤ LTV / (1 − LTV)."""
        return self.ltv / (1.0 - self.ltv)


@dataclass(frozen=True)
class LendingState:
    """Collateral and debt of one leveraged position, in the quote currency at the oracle price."""

    long: bool
    quantity: float  # base units held (long: collateral; short: debt)
    avg_price: float
    balance: float  # account cash

    def debt_value(self, price: float) -> float:
        if self.long:
            return self.quantity * self.avg_price - self.balance
        return self.quantity * price

    def collateral_value(self, price: float) -> float:
        if self.long:
            return self.quantity * price
        return self.balance + self.quantity * self.avg_price


def health_factor(state: LendingState, price: float, params: LendingParams) -> float:
    """Return HF = collateral · LT / debt at ``price`` (``inf`` without debt)."""
    debt = state.debt_value(price)
    if debt <= 0.0:
        return float("inf")
    return state.collateral_value(price) * params.liquidation_threshold / debt


def liquidation_price(state: LendingState, params: LendingParams) -> float | None:
    """Return the price at which HF = 1, or ``None`` if the position cannot be liquidated."""
    if state.quantity <= 0.0:
        return None
    lt = params.liquidation_threshold
    if state.long:
        debt = state.quantity * state.avg_price - state.balance
        return debt / (state.quantity * lt) if debt > 0.0 else None
    collateral = state.balance + state.quantity * state.avg_price
    return collateral * lt / state.quantity if collateral > 0.0 else 0.0


def close_factor(hf: float, params: LendingParams) -> float:
    """Fraction of the debt a liquidator may repay at health factor ``hf``."""
    return 1.0 if hf < params.full_close_hf else params.close_factor


@dataclass(frozen=True)
class Liquidation:
    """One liquidation call: base units seized (closed) and the bonus the position pays."""

    quantity: float
    repaid: float  # debt value repaid, quote
    penalty: float  # repaid × bonus, quote


def liquidation_at(state: LendingState, price: float, params: LendingParams) -> Liquidation | None:
    """Return what a liquidator takes at ``price`` (``None`` if HF ≥ 1).

    Long: repaid R of stablecoin debt, R·(1+bonus)/price base units of collateral seized (sold).
    Short: R = repaid base debt value, the same base quantity R/price is bought back, and
    R·bonus of stablecoin collateral is seized on top. Seizure is capped at what exists.
    """
    hf = health_factor(state, price, params)
    if hf >= 1.0:
        return None
    repaid = close_factor(hf, params) * state.debt_value(price)
    bonus = params.liquidation_bonus
    if state.long:
        quantity = min(state.quantity, repaid * (1.0 + bonus) / price)
        repaid = quantity * price / (1.0 + bonus)
    else:
        quantity = min(state.quantity, repaid / price)
        repaid = quantity * price
    return Liquidation(quantity=quantity, repaid=repaid, penalty=repaid * bonus)


def leverage_from_hf(hf: float, params: LendingParams) -> float:
    """Return L for a long's health factor: HF = LT·L/(L−1) ⇔ L = HF/(HF − LT)."""
    return hf / (hf - params.liquidation_threshold)


def price_drop_to_liquidation(leverage: float, params: LendingParams) -> float:
    """Fractional price drop that takes a fresh long at ``leverage`` to HF = 1: 1 − (L−1)/(L·LT)."""
    return 1.0 - (leverage - 1.0) / (leverage * params.liquidation_threshold)
