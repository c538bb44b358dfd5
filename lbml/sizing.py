"""The EV rule and fractional-Kelly sizing: one decision function for training, backtest and live.

A trade's payoff is not its bracket. With a 0.8 % take-profit and stop-loss on a market that moves
~0.3 % in the label's horizon, most trades end at the time exit with a small gain or loss, so a
break-even computed from the bracket distances (``(sl + c) / (tp + sl)``) is far too lenient: it
let the demo trade 416 times on a signal worth less than its costs. The rule here prices a trade
with what it actually earns:

- ``Payoff``: expected gross return of a long and of a short, *given the label's outcome*, under
  the strategy's own exits (stop-loss, take-profit, time exit), estimated on the training window
  (``lbml.research.payoff``). With ``p`` the calibrated probability of "up",
  ``E[r_long] = p·win_long − (1 − p)·loss_long``.
- ``CostModel`` (``lbml.cost_model``): fees, slippage, financing and gas of the round trip at the
  size it would be traded.

A side is traded when ``p_side ≥ break_even + ev_margin`` with
``break_even = (loss + c) / (win + loss)`` and the net expected return is positive; the exposure is
``kelly_fraction × f*`` for the binary bet ``win − c`` / ``loss + c``
(``f* = p/(loss + c) − (1 − p)/(win − c)``), capped per side.
"""

import math
from dataclasses import dataclass, field

from lbml.cost_model import CostModel, RoundTripCost, total_of


@dataclass(frozen=True)
class Payoff:
    """Gross trade returns (fractions of notional) conditional on the label outcome, and holding times."""

    win_long: float  # E[r_long | up]
    loss_long: float  # E[-r_long | down]
    win_short: float  # E[r_short | down]
    loss_short: float  # E[-r_short | up]
    hold_minutes_long: float
    hold_minutes_short: float

    @classmethod
    def from_brackets(cls, take_profit_pct: float, stop_loss_pct: float, hold_minutes: float) -> "Payoff":
        """Every trade ends at its take-profit or its stop-loss (the optimistic textbook bracket)."""
        return cls(take_profit_pct, stop_loss_pct, take_profit_pct, stop_loss_pct, hold_minutes, hold_minutes)

    def side(self, side: int) -> tuple[float, float, float]:
        """``(win, loss, hold_minutes)`` of a long (+1) or short (−1)."""
        if side > 0:
            return self.win_long, self.loss_long, self.hold_minutes_long
        return self.win_short, self.loss_short, self.hold_minutes_short

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class KellyParams:
    kelly_fraction: float
    max_leverage: float  # long exposure cap is max_leverage × max_position_fraction
    max_position_fraction: float
    min_notional: float
    payoff: Payoff
    costs: CostModel = field(default_factory=CostModel)
    probability_shrinkage: float = 1.0
    probability_n_eff: float = 0.0  # samples behind the calibrated probability (0 = no uncertainty shrink)
    uncertainty_z: float = 1.0
    ev_margin: float = 0.0  # extra probability above break-even, tuned on out-of-fold predictions
    max_short_exposure: float | None = None  # shorts may be capped lower (lending markets)

    def cap(self, side: int) -> float:
        cap = self.max_leverage * self.max_position_fraction
        if side < 0 and self.max_short_exposure is not None:
            cap = min(cap, self.max_short_exposure)
        return cap


@dataclass(frozen=True)
class Decision:
    """What the rule decided for one probability."""

    exposure: float  # signed multiple of equity (+ long, − short, 0 no trade)
    probability: float  # the (shrunk) probability of the chosen side, or of "up" when flat
    break_even: float  # break-even probability of the chosen side (the better side when flat)
    expected_return: float  # net expected return per unit notional of the chosen side
    full_kelly: float  # f* before the Kelly fraction and the cap
    cost: RoundTripCost | None  # the round trip's expected cost at the decided size

    @property
    def side(self) -> int:
        return (self.exposure > 0.0) - (self.exposure < 0.0)


def shrink_probability(p: float, n_eff: float, z: float = 1.0) -> float:
    """Shrink ``p`` toward 0.5 by ``z`` standard errors of a proportion estimated from ``n_eff`` samples.

    The edge |p − 0.5| is reduced by z·√(p(1−p)/n_eff) and floored at zero, so a probability that
    is not distinguishable from a coin flip gives no trade. ``n_eff <= 0`` leaves ``p`` unchanged.
    """
    if n_eff <= 0.0:
        return p
    se = math.sqrt(max(p * (1.0 - p), 0.0) / n_eff)
    edge = max(0.0, abs(p - 0.5) - z * se)
    return 0.5 + math.copysign(edge, p - 0.5)


def kelly_fraction(p_win: float, win: float, loss: float) -> float:
    """Growth-optimal exposure (multiple of equity) for a bet winning ``win`` w.p. ``p_win``
    and losing ``loss`` otherwise, both as fractions of the position notional:
    f* = p/loss − (1 − p)/win. Negative means the bet has no edge."""
    if win <= 0.0 or loss <= 0.0:
        return 0.0
    return p_win / loss - (1.0 - p_win) / win


def break_even_probability(win: float, loss: float, cost: float) -> float:
    """The probability above which a bet of gross ``win``/``loss`` has positive value after ``cost``.

    1 (never) when the net win is not positive, or when the loss is not positive: a side that
    "earns" even when the label goes against it is riding the training window's drift, which the
    model does not predict.
    """
    net_win, net_loss = win - cost, loss + cost
    return net_loss / (net_win + net_loss) if net_win > 0.0 and loss > 0.0 else 1.0


def decide(p_up: float, params: KellyParams, *, equity: float = math.inf, sigma_1m: float = 0.0) -> Decision:
    """Apply the EV rule and fractional Kelly to the calibrated probability ``p_up``."""
    p = 0.5 + params.probability_shrinkage * (p_up - 0.5)
    p = shrink_probability(p, params.probability_n_eff, params.uncertainty_z)
    best: tuple[float, float] | None = None  # (break-even, expected return) of the better side
    for side in (1, -1):
        p_side = p if side > 0 else 1.0 - p
        decision = _decide_side(side, p_side, params, equity, sigma_1m)
        if type(decision) is Decision:
            if decision.exposure != 0.0:
                return decision
            decision = (decision.break_even, decision.expected_return)
        if best is None or decision[0] < best[0]:
            best = decision
    return Decision(0.0, p, best[0], best[1], 0.0, None)


def _decide_side(side: int, p: float, params: KellyParams, equity: float,
                 sigma_1m: float) -> Decision | tuple[float, float]:
    """The side's decision, or ``(break_even, expected_return)`` when it does not trade (this runs on
    every bar: no ``Decision`` is built for a side that is not taken)."""
    win, loss, hold = params.payoff.side(side)
    cap = params.cap(side)
    costs = params.costs

    def priced(exposure: float) -> tuple[tuple[float, float, float, float], float, float, float]:
        parts = costs.round_trip_parts(side, exposure, hold, exposure * equity, sigma_1m)
        c = total_of(*parts)
        return parts, break_even_probability(win, loss, c), p * (win - c) - (1.0 - p) * (loss + c), \
            kelly_fraction(p, win - c, loss + c)

    # Price at the cap first (the most a trade can borrow), then at the size actually taken.
    _, be, ev, f_star = priced(cap)
    none = be, ev  # a side that does not trade reports its figures at the cap
    if p < be + params.ev_margin or ev <= 0.0 or f_star <= 0.0:
        return none
    exposure = min(params.kelly_fraction * f_star, cap)
    if exposure * equity < params.min_notional:
        return none
    parts, be, ev, f_star = priced(exposure)
    if p < be + params.ev_margin or ev <= 0.0:
        return none
    return Decision(side * exposure, p, be, ev, f_star, RoundTripCost(*parts))


def target_exposure(p_up: float, params: KellyParams, *, equity: float = math.inf) -> float:
    """Signed target exposure as a multiple of equity (+ long, − short, 0 no trade)."""
    return decide(p_up, params, equity=equity).exposure
