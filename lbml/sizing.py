"""Fractional-Kelly position sizing for a bracketed trade (pure functions, no engine)."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class KellyParams:
    kelly_fraction: float
    max_leverage: float
    max_position_fraction: float
    min_notional: float
    stop_loss_pct: float
    take_profit_pct: float
    round_trip_cost_pct: float  # fees + slippage + expected borrow, as a fraction of notional
    probability_shrinkage: float = 1.0
    probability_n_eff: float = 0.0  # samples behind the calibrated probability (0 = no uncertainty shrink)
    uncertainty_z: float = 1.0
    ev_margin: float = 0.0  # extra probability above break-even, tuned on out-of-fold predictions


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


def target_exposure(p_up: float, params: KellyParams) -> float:
    """Signed target exposure as a multiple of equity (+ long, − short, 0 no trade).

    The probability is shrunk toward 0.5, the payoff is net of round-trip costs, the result is
    scaled by the Kelly fraction and capped at ``max_leverage × max_position_fraction``.
    """
    p = 0.5 + params.probability_shrinkage * (p_up - 0.5)
    p = shrink_probability(p, params.probability_n_eff, params.uncertainty_z)
    win = params.take_profit_pct - params.round_trip_cost_pct
    loss = params.stop_loss_pct + params.round_trip_cost_pct
    f_long = kelly_fraction(p, win, loss)
    f_short = kelly_fraction(1.0 - p, win, loss)
    cap = params.max_leverage * params.max_position_fraction
    # Expected-value rule: trade only above break-even plus the model's out-of-fold margin.
    threshold = (loss / (win + loss) if win > 0 else 1.0) + params.ev_margin
    if f_long > 0.0 and p >= threshold:
        return min(params.kelly_fraction * f_long, cap)
    if f_short > 0.0 and 1.0 - p >= threshold:
        return -min(params.kelly_fraction * f_short, cap)
    return 0.0


def break_even_probability(params: KellyParams) -> float:
    """The probability above which a bracketed trade has positive expected value net of costs."""
    win = params.take_profit_pct - params.round_trip_cost_pct
    loss = params.stop_loss_pct + params.round_trip_cost_pct
    return loss / (win + loss) if win > 0 else 1.0
