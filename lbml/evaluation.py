"""Out-of-sample evaluation of out-of-fold predictions: the EV rule, trade returns, statistics.

The expected-value rule trades only when the (calibrated, shrunk) probability exceeds the
break-even implied by the strategy's take-profit/stop distances and round-trip costs (fees,
slippage, expected borrow; ``lbml.sizing.break_even_probability``), plus a margin. The margin is
chosen on out-of-fold predictions only, and every margin tried counts as a trial for the deflated
Sharpe ratio.

Trade returns are a proxy of the strategy, on the labelled-sample grid: at sample i the rule goes
long (short) for the label's span and earns ±(label return) − round-trip cost; a new trade opens
only after the previous one's t1, so trades never overlap. The grid value is 0 where no trade opens.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from lbml.calibration import probability_scores
from lbml.scenario import Scenario
from lbml.sizing import KellyParams, break_even_probability
from lbml.stats import (
    deflated_sharpe_ratio,
    information_coefficient,
    probabilistic_sharpe_ratio,
    sharpe,
    sharpe_bootstrap_ci,
)


@dataclass(frozen=True)
class TradeRule:
    break_even: float
    margin: float
    shrinkage: float
    round_trip_cost: float

    @property
    def threshold(self) -> float:
        return self.break_even + self.margin


def round_trip_cost(scenario: Scenario, bar_minutes: int) -> float:
    """The round-trip cost fraction the strategy itself assumes (fees, slippage, expected borrow)."""
    from lbml.engine.backtest import strategy_config_kwargs

    return float(strategy_config_kwargs(scenario, bar_minutes)["round_trip_cost_pct"])


def break_even(scenario: Scenario, bar_minutes: int) -> float:
    """Probability above which the strategy's bracketed trade has positive expected value."""
    s = scenario.strategy
    params = KellyParams(
        kelly_fraction=s.kelly_fraction, max_leverage=s.max_leverage,
        max_position_fraction=s.max_position_fraction, min_notional=s.min_notional,
        stop_loss_pct=s.stop_loss_pct, take_profit_pct=s.take_profit_pct,
        round_trip_cost_pct=round_trip_cost(scenario, bar_minutes),
        probability_shrinkage=s.probability_shrinkage,
    )
    return break_even_probability(params)


def trade_returns(
    p_up: np.ndarray, forward_return: np.ndarray, t0_ns: np.ndarray, t1_ns: np.ndarray, rule: TradeRule
) -> np.ndarray:
    """Non-overlapping trade returns on the sample grid (0 where no trade opens; NaN p → no trade)."""
    p = 0.5 + rule.shrinkage * (np.asarray(p_up, dtype=np.float64) - 0.5)
    side = np.where(p > rule.threshold, 1.0, np.where(1.0 - p > rule.threshold, -1.0, 0.0))
    side[~np.isfinite(p)] = 0.0
    simple = np.expm1(np.asarray(forward_return, dtype=np.float64))
    out = np.zeros(len(p))
    busy_until = np.iinfo(np.int64).min
    for i in np.flatnonzero(side != 0.0):
        if t0_ns[i] <= busy_until:
            continue
        out[i] = side[i] * simple[i] - rule.round_trip_cost
        busy_until = t1_ns[i]
    return out


def choose_margin(
    p_up, forward_return, t0_ns, t1_ns, base: TradeRule, margins: tuple[float, ...]
) -> tuple[TradeRule, dict[float, float]]:
    """Pick the margin with the best out-of-fold per-trade Sharpe (ties → the smaller margin)."""
    scores: dict[float, float] = {}
    best, best_score = None, -math.inf
    for m in sorted(margins):
        rule = TradeRule(base.break_even, m, base.shrinkage, base.round_trip_cost)
        r = trade_returns(p_up, forward_return, t0_ns, t1_ns, rule)
        traded = r[r != 0.0]
        score = sharpe(traded) if len(traded) >= 2 else -math.inf
        scores[m] = score
        if np.isfinite(score) and score > best_score:
            best, best_score = rule, score
    if best is None:
        best = TradeRule(base.break_even, min(margins), base.shrinkage, base.round_trip_cost)
    return best, scores


def oos_statistics(
    y: np.ndarray,
    p_up: np.ndarray,
    forward_return: np.ndarray,
    grid_returns: np.ndarray,
    *,
    n_trials: int,
    trial_variance: float | None = None,
    bootstrap_reps: int = 500,
    seed: int = 0,
) -> dict[str, float]:
    """Every out-of-sample statistic ``metrics.json`` reports, from OOF predictions and returns."""
    ok = np.isfinite(p_up)
    y, p, fwd = np.asarray(y)[ok], np.asarray(p_up)[ok], np.asarray(forward_return)[ok]
    out: dict[str, float] = {"n_oos": int(ok.sum())}
    out["oos_auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) > 1 else float("nan")
    scores = probability_scores(y, p)
    out["oos_logloss"] = scores["logloss"]
    out["brier"] = scores["brier"]
    out["ece"] = scores["ece"]
    out["ic"] = information_coefficient(p, fwd)
    traded = grid_returns[grid_returns != 0.0]
    out["n_oos_trades"] = int(len(traded))
    out["oos_trade_sharpe"] = sharpe(traded)
    out["oos_mean_trade_return"] = float(traded.mean()) if len(traded) else float("nan")
    out["psr"] = probabilistic_sharpe_ratio(traded) if len(traded) > 3 else float("nan")
    out["dsr"] = deflated_sharpe_ratio(traded, n_trials, trial_variance) if len(traded) > 3 else float("nan")
    low, high = sharpe_bootstrap_ci(traded, reps=bootstrap_reps, seed=seed)
    out["sharpe_ci_low"], out["sharpe_ci_high"] = low, high
    out["n_trials"] = int(n_trials)
    return out


def grid_hash(index: pd.DatetimeIndex) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(index.asi8).tobytes()).hexdigest()[:16]
