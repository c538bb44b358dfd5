"""Exchange isolated margin for a perpetual or margin position (pure functions).

An isolated position of ``q`` base units opened at average price ``E`` with position leverage
``L`` posts initial margin ``M = q·E / L``. Every later cash flow of the position (funding,
borrow interest) is booked against that margin; ``extra`` below is their signed sum. The
position is liquidated when its margin equity reaches the maintenance margin:

    long:  M + extra + q·(P − E) = mmr · q · P   →  P_liq = (q·E − M − extra) / (q·(1 − mmr))
    short: M + extra + q·(E − P) = mmr · q · P   →  P_liq = (q·E + M + extra) / (q·(1 + mmr))

On liquidation the whole position is closed and the remaining margin up to ``liquidation_fee``
× notional goes to the exchange's insurance fund (the penalty, capped at the margin left after the
close so the fee never takes more than the position's margin).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class MarginParams:
    leverage: float = 5.0
    max_leverage: float = 20.0
    maintenance_margin_rate: float = 0.005
    liquidation_fee: float = 0.005


@dataclass(frozen=True)
class IsolatedPosition:
    long: bool
    quantity: float
    avg_price: float
    margin: float  # initial margin posted
    extra: float = 0.0  # funding and interest booked against the margin since entry (signed)

    def margin_equity(self, price: float) -> float:
        sign = 1.0 if self.long else -1.0
        return self.margin + self.extra + sign * self.quantity * (price - self.avg_price)


def initial_margin(quantity: float, price: float, params: MarginParams) -> float:
    return quantity * price / min(params.leverage, params.max_leverage)


def margin_ratio(position: IsolatedPosition, price: float, params: MarginParams) -> float:
    """Margin equity over maintenance margin: liquidated when ≤ 1 (the exchange's 'health')."""
    maintenance = params.maintenance_margin_rate * position.quantity * price
    return position.margin_equity(price) / maintenance if maintenance > 0.0 else float("inf")


def liquidation_price(position: IsolatedPosition, params: MarginParams) -> float:
    q, e, mmr = position.quantity, position.avg_price, params.maintenance_margin_rate
    cushion = position.margin + position.extra
    if position.long:
        return max(0.0, (q * e - cushion) / (q * (1.0 - mmr)))
    return (q * e + cushion) / (q * (1.0 + mmr))


def liquidation_penalty(quantity: float, fill_price: float, params: MarginParams) -> float:
    return params.liquidation_fee * quantity * fill_price
