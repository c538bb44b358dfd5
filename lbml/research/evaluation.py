"""Out-of-sample evaluation of out-of-fold predictions: the EV rule, trade returns, statistics.

The rule is the strategy's own (``lbml.sizing.decide``): a side is traded when its calibrated
probability clears the break-even of the trade's real payoff (``lbml.research.payoff``) after the round
trip's cost (``lbml.cost_model``), plus a margin. The margin is chosen on out-of-fold predictions
only, and every margin tried counts as a trial for the deflated Sharpe ratio.

Trade returns are evaluated on **every bar the strategy could trade** (not only the labelled bars
outside the dead zone, which the future selects): at bar i the rule opens the chosen side, earns
that side's simulated bracket return (stop, take-profit, time exit) minus the round trip's cost,
and no new trade opens before that trade has closed. The grid value is 0 where no trade opens.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from lbml.models.calibration import probability_scores
from lbml.research.payoff import TradeOutcomes
from lbml.sizing import KellyParams, decide
from lbml.research.stats import (
    deflated_sharpe_ratio,
    information_coefficient,
    probabilistic_sharpe_ratio,
    sharpe,
    sharpe_bootstrap_ci,
)


@dataclass(frozen=True)
class TradeGrid:
    """Per out-of-fold bar: the net return of the trade opened there (0 = none) and what it assumed."""

    returns: np.ndarray
    side: np.ndarray  # +1 / -1 / 0
    cost: np.ndarray  # the round trip's assumed cost (fraction of notional), 0 where no trade
    break_even: np.ndarray  # the traded side's break-even probability, NaN where no trade

    @property
    def traded(self) -> np.ndarray:
        return self.returns[self.side != 0]


def trade_grid(
    p_up: np.ndarray, outcomes: TradeOutcomes, t0_ns: np.ndarray, bar_ns: int, params: KellyParams
) -> TradeGrid:
    """Non-overlapping trades of the rule on the out-of-fold probabilities (NaN p → no trade)."""
    n = len(p_up)
    out = np.zeros(n)
    side = np.zeros(n, dtype=np.int8)
    cost = np.zeros(n)
    be = np.full(n, np.nan)
    busy_until = np.iinfo(np.int64).min
    p_up = np.asarray(p_up, dtype=np.float64)
    for i in range(n):
        p = p_up[i]
        if t0_ns[i] < busy_until or not math.isfinite(p):
            continue
        d = decide(float(p), params)
        if d.side == 0:
            continue
        gross = outcomes.long_return[i] if d.side > 0 else outcomes.short_return[i]
        held = outcomes.long_bars[i] if d.side > 0 else outcomes.short_bars[i]
        if not math.isfinite(gross):
            continue
        out[i] = gross - d.cost.total
        side[i], cost[i], be[i] = d.side, d.cost.total, d.break_even
        busy_until = int(t0_ns[i]) + int(held) * bar_ns
    return TradeGrid(out, side, cost, be)


def choose_margin(
    p_up, outcomes: TradeOutcomes, t0_ns, bar_ns: int, base: KellyParams, margins: tuple[float, ...]
) -> tuple[KellyParams, dict[float, float]]:
    """Pick the margin with the best out-of-fold per-trade Sharpe (ties → the smaller margin)."""
    scores: dict[float, float] = {}
    best, best_score = None, -math.inf
    for m in sorted(margins):
        params = replace(base, ev_margin=m)
        traded = trade_grid(p_up, outcomes, t0_ns, bar_ns, params).traded
        score = sharpe(traded) if len(traded) >= 2 else -math.inf
        scores[m] = score
        if np.isfinite(score) and score > best_score:
            best, best_score = params, score
    if best is None:
        best = replace(base, ev_margin=max(margins))
    return best, scores


def oos_statistics(
    y: np.ndarray,
    labelled: np.ndarray,
    p_up: np.ndarray,
    forward_return: np.ndarray,
    grid: TradeGrid,
    *,
    n_trials: int,
    trial_variance: float | None = None,
    bootstrap_reps: int = 500,
    seed: int = 0,
    score: np.ndarray | None = None,
) -> dict[str, float]:
    """Every out-of-sample statistic ``metrics.json`` reports, from OOF predictions and trades.

    Classification scores (AUC, log loss, Brier, ECE) need a label, so they use the labelled bars;
    the IC and every trade statistic (PSR, DSR, Sharpe interval) use every bar with a prediction.
    Ranking statistics (AUC, IC) use ``score``, the fold models' output before calibration, when
    given: a calibration map is monotone, and an isotonic one's ties would only blur the ranking.
    """
    score = p_up if score is None else score
    ok = np.isfinite(p_up)
    lab = ok & np.asarray(labelled, dtype=bool)
    y_l, p_l = np.asarray(y)[lab], np.asarray(p_up)[lab]
    out: dict[str, float] = {"n_oos": int(ok.sum()), "n_oos_labelled": int(lab.sum())}
    s_l = np.asarray(score)[lab]
    out["oos_auc"] = float(roc_auc_score(y_l, s_l)) if len(np.unique(y_l)) > 1 else float("nan")
    scores = probability_scores(y_l, p_l)
    out["oos_logloss"] = scores["logloss"]
    out["brier"] = scores["brier"]
    out["ece"] = scores["ece"]
    out["ic"] = information_coefficient(np.asarray(score)[ok], np.asarray(forward_return)[ok])
    traded = grid.traded
    out["n_oos_trades"] = int(len(traded))
    out["oos_trade_sharpe"] = sharpe(traded)
    out["oos_mean_trade_return"] = float(traded.mean()) if len(traded) else float("nan")
    out["oos_mean_trade_cost"] = float(grid.cost[grid.side != 0].mean()) if len(traded) else float("nan")
    out["oos_win_rate"] = float((traded > 0).mean()) if len(traded) else float("nan")
    out["psr"] = probabilistic_sharpe_ratio(traded) if len(traded) > 3 else float("nan")
    out["dsr"] = deflated_sharpe_ratio(traded, n_trials, trial_variance) if len(traded) > 3 else float("nan")
    low, high = sharpe_bootstrap_ci(traded, reps=bootstrap_reps, seed=seed)
    out["sharpe_ci_low"], out["sharpe_ci_high"] = low, high
    out["n_trials"] = int(n_trials)
    return out


def grid_hash(index: pd.DatetimeIndex) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(index.asi8).tobytes()).hexdigest()[:16]
