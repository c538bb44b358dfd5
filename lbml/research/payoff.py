"""What a bracketed trade opened at a bar's close actually returns, under the strategy's exits.

For every bar ``t`` a long and a short are simulated on the following bars: entry at ``t``'s close,
a stop-loss and a take-profit at the strategy's distances, a time exit at ``max_holding_bars``.
Within a bar the stop is assumed to trigger first when both levels are touched (the conservative
order), and a bar that opens through the stop fills at its open (gap-through). The result is a
``TradeOutcomes`` table: gross return and holding time of each side at each bar (NaN where the
trade would outlive the data).

``estimate_payoff`` conditions those returns on the label's outcome: ``win_long = E[r_long | up]``
and so on, which is what the EV rule needs (``lbml.sizing.Payoff``). Estimated on the training
window only; the out-of-fold evaluation and the engine then use the same numbers.

Not simulated: exits on an opposite signal (they only shorten trades) and trailing stops (priced
as a fixed stop).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from lbml.sizing import Payoff


@dataclass(frozen=True)
class TradeOutcomes:
    """Per bar: gross simple return and bars held of a long and of a short opened at its close."""

    long_return: np.ndarray
    short_return: np.ndarray
    long_bars: np.ndarray
    short_bars: np.ndarray

    def take(self, rows) -> "TradeOutcomes":
        """The outcomes of ``rows`` (a mask or positions)."""
        return TradeOutcomes(self.long_return[rows], self.short_return[rows], self.long_bars[rows],
                             self.short_bars[rows])


def simulate_brackets(bars: pd.DataFrame, stop_loss_pct: float, take_profit_pct: float, max_bars: int) -> TradeOutcomes:
    """Simulate a long and a short from every bar's close (see the module docstring)."""
    o, h, lo, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    n = len(c)
    out = [np.full(n, np.nan) for _ in range(4)]
    m = n - max_bars
    if m <= 0:
        return TradeOutcomes(*out)
    # Row t of each window holds bars t+1 .. t+max_bars.
    wo, wh, wl = (sliding_window_view(a[1:], max_bars)[:m] for a in (o, h, lo))
    entry = c[:m, None]
    last = c[max_bars : max_bars + m]
    for side, ret, held in ((1, out[0], out[2]), (-1, out[1], out[3])):
        stop = entry * (1.0 - side * stop_loss_pct)
        take = entry * (1.0 + side * take_profit_pct)
        stopped = (wl <= stop) if side > 0 else (wh >= stop)
        taken = (wh >= take) if side > 0 else (wl <= take)
        first_stop = _first(stopped, max_bars)
        first_take = _first(taken, max_bars)
        rows = np.arange(m)
        stop_exit = first_stop <= first_take  # same bar: the stop first
        j = np.minimum(first_stop, first_take)
        jc = np.minimum(j, max_bars - 1)
        gap_open = wo[rows, jc]
        stop_px = np.where(side * (gap_open - stop[:, 0]) < 0, gap_open, stop[:, 0])
        exit_px = np.where(j >= max_bars, last, np.where(stop_exit, stop_px, take[:, 0]))
        ret[:m] = side * (exit_px / c[:m] - 1.0)
        held[:m] = np.where(j >= max_bars, max_bars, j + 1)
    return TradeOutcomes(*out)


def _first(hit: np.ndarray, none: int) -> np.ndarray:
    any_hit = hit.any(axis=1)
    return np.where(any_hit, hit.argmax(axis=1), none)


def estimate_payoff(
    outcomes: TradeOutcomes, forward_return: np.ndarray, bar_minutes: int, rows: np.ndarray | None = None
) -> Payoff:
    """``Payoff`` from simulated outcomes conditioned on the sign of ``forward_return`` (the label).

    ``rows`` restricts the estimate (e.g. to a CV fold's training bars); rows with an unknown
    outcome or label are skipped.
    """
    idx = np.arange(len(forward_return)) if rows is None else np.asarray(rows)
    fwd = forward_return[idx]
    rl, rs = outcomes.long_return[idx], outcomes.short_return[idx]
    ok = np.isfinite(fwd) & np.isfinite(rl) & np.isfinite(rs)
    up, down = ok & (fwd > 0), ok & (fwd <= 0)
    if up.sum() < 2 or down.sum() < 2:
        raise ValueError("too few bars with a known trade outcome to estimate the payoff")
    return Payoff(
        win_long=float(rl[up].mean()),
        loss_long=float(-rl[down].mean()),
        win_short=float(rs[down].mean()),
        loss_short=float(-rs[up].mean()),
        hold_minutes_long=float(outcomes.long_bars[idx][ok].mean() * bar_minutes),
        hold_minutes_short=float(outcomes.short_bars[idx][ok].mean() * bar_minutes),
    )
