"""What one round trip costs: the single pricing of fees, slippage, financing and gas.

Everything that *prices* a trade before it is made reads this module: the EV rule and Kelly
sizing in the strategy (``lbml.sizing``), the out-of-fold evaluation in training
(``lbml.research.evaluation``) and the reports' break-even figures. The venue modules that *charge* costs
(``lbml.engine.venue_modules``) are built from the same ``CostModel`` rates, so the price assumed
and the price charged cannot drift apart; a test on the engine compares them trade by trade.

A round trip at exposure ``x`` (notional / equity) held ``hold_minutes``, as fractions of the
position's notional:

- fees: the entry is a market order (taker); the exit is taken as taker too (stop, time exit,
  opposite signal, liquidation). A take-profit limit fills as maker, so the assumed fee is an
  upper bound for those trades.
- slippage: charged by the venue on taker fills only: ``slippage_bps`` per leg, or
  ``max(floor, k·σ_1m)`` per leg with the volatility model (σ known when the order is priced).
- financing: a long borrows the quote beyond equity, i.e. ``(x − 1)/x`` of the notional, at the
  long APR; a short borrows its whole notional of the base at the short APR; a perpetual pays
  ``funding_per_settlement`` (its expected rate, longs pay a positive one) every settlement.
- gas: ``gas_per_tx`` per fill, two fills, divided by the notional.
"""

import math
from dataclasses import dataclass

from lbml.leverage.rates import expected_borrow_apr

MINUTES_PER_YEAR = 365 * 24 * 60


@dataclass(frozen=True)
class RoundTripCost:
    """One round trip's expected cost, each part a fraction of the position's notional."""

    fees: float
    slippage: float
    financing: float
    gas: float

    @property
    def total(self) -> float:
        return total_of(self.fees, self.slippage, self.financing, self.gas)

    def as_dict(self) -> dict[str, float]:
        return {"fees": self.fees, "slippage": self.slippage, "financing": self.financing, "gas": self.gas,
                "total": self.total}


def total_of(fees: float, slippage: float, financing: float, gas: float) -> float:
    """A round trip's total from its parts (``RoundTripCost.total``; the EV rule sums unboxed parts)."""
    return fees + slippage + financing + gas


@dataclass(frozen=True)
class CostModel:
    """The rates a venue charges, and the expected cost of a round trip at a size and holding time."""

    taker_fee: float = 0.0004
    maker_fee: float = 0.0002
    slippage_rate: float = 0.0001  # per taker leg (fixed model), or the floor (volatility model)
    slippage_vol_k: float = 0.0  # > 0: slippage per leg = max(slippage_rate, k * sigma_1m)
    long_borrow_apr: float = 0.0  # on the loan: the notional beyond equity
    short_borrow_apr: float = 0.0  # on the whole notional of a short
    funding_per_settlement: float = 0.0  # expected funding rate; longs pay a positive one
    funding_interval_minutes: float = 480.0
    gas_per_tx: float = 0.0

    def slippage_per_leg(self, sigma_1m: float = 0.0) -> float:
        if self.slippage_vol_k > 0.0:
            return max(self.slippage_rate, self.slippage_vol_k * sigma_1m)
        return self.slippage_rate

    def entry_notional(self, exposure: float, equity: float, sigma_1m: float = 0.0) -> float:
        """The notional that puts ``exposure`` × the equity left after the entry's own costs to work.

        ``N = x·(E − gas) / (1 + x·c)`` with ``c`` the entry leg's taker fee and slippage per unit of
        notional, so ``N·c + gas + N/x = E``: the margin a position posts at exposure ``x`` (``N/x``
        at the venue's leverage ``x``) is never more than the cash left after paying for the entry.
        """
        x = abs(exposure)
        c = self.taker_fee + self.slippage_per_leg(sigma_1m)
        return max(0.0, x * (equity - self.gas_per_tx) / (1.0 + x * c))

    def financing(self, side: int, exposure: float, hold_minutes: float) -> float:
        """Borrow interest and funding for ``hold_minutes``, as a fraction of the notional."""
        years = hold_minutes / MINUTES_PER_YEAR
        x = abs(exposure)
        if side > 0:
            loan = max(0.0, x - 1.0) / x if x > 0.0 else 0.0
            borrow = loan * self.long_borrow_apr * years
        else:
            borrow = self.short_borrow_apr * years
        settlements = hold_minutes / self.funding_interval_minutes if self.funding_interval_minutes > 0 else 0.0
        return borrow + side * self.funding_per_settlement * settlements

    def round_trip(
        self, side: int, exposure: float, hold_minutes: float, *, notional: float = math.inf, sigma_1m: float = 0.0
    ) -> RoundTripCost:
        """Expected cost of opening and closing one position (``side`` +1 long, −1 short)."""
        return RoundTripCost(*self.round_trip_parts(side, exposure, hold_minutes, notional, sigma_1m))

    def round_trip_parts(
        self, side: int, exposure: float, hold_minutes: float, notional: float = math.inf, sigma_1m: float = 0.0
    ) -> tuple[float, float, float, float]:
        """``round_trip``'s (fees, slippage, financing, gas) as a tuple: the EV rule prices every bar's
        candidate sizes with it and builds a ``RoundTripCost`` only for the trade it takes."""
        gas = 2.0 * self.gas_per_tx / notional if notional > 0.0 and math.isfinite(notional) else 0.0
        return 2.0 * self.taker_fee, 2.0 * self.slippage_per_leg(sigma_1m), self.financing(side, exposure, hold_minutes), gas


def cost_model_for(scenario, funding_per_settlement: float = 0.0, funding_interval_minutes: float = 480.0) -> CostModel:
    """The ``CostModel`` of a scenario's ``[costs]`` and ``[leverage]`` (the venue charges the same rates).

    ``funding_per_settlement`` is the expected funding rate of a perpetual (e.g. the training
    window's mean); only ``exchange_margin`` with funding pays it.
    """
    c, lev = scenario.costs, scenario.leverage
    if lev.model == "exchange_margin":
        long_apr = short_apr = 0.0  # a perpetual pays funding instead of interest
        funding = funding_per_settlement * lev.funding_multiplier if lev.funding else 0.0
    else:
        long_apr = expected_borrow_apr(scenario)
        short_apr = long_apr if lev.model == "aave_lending" else c.borrow_apr_base
        funding = 0.0
    return CostModel(
        taker_fee=c.taker_fee,
        maker_fee=c.maker_fee,
        slippage_rate=c.slippage_bps / 1e4,
        slippage_vol_k=c.slippage_vol_k if c.slippage_model == "volatility" else 0.0,
        long_borrow_apr=long_apr,
        short_borrow_apr=short_apr,
        funding_per_settlement=funding,
        funding_interval_minutes=funding_interval_minutes,
        gas_per_tx=c.gas_per_tx,
    )
