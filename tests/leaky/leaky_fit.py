"""Deliberately leaky feature plugins whose leak lives in the fitted state. The checker must catch both.

``leaky_fit_drift``: ``fit`` is handed the training window, but learns the drift of the bars
*after* it, read through the NumPy buffer behind the slice (a window cut with ``.loc`` is a view of
the whole frame). It stands for any ``fit`` that learns from more than it is given (a cached full
frame, a global, its own copy of the data). The drift is declared fitted state, so the live node
loads the same number and batch/stream parity holds.

``leaky_table``: ``fit`` stores every training bar's *next* close in its declared fitted state; in
sample the feature is the next bar's return, out of sample the last bar's (finite, so no NaN
gives it away). Parity holds too, and loading the baseline's state hides any perturbation of the
fit window.
"""

import math

import numpy as np

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeaturePlugin
from lbml.hookspecs import hookimpl


class LeakyFitDrift(FeaturePlugin):
    """Bar log return minus the mean log return of the test period."""

    name = "leaky_fit_drift"

    def output_names(self) -> tuple[str, ...]:
        return ("leaky_excess_return",)

    def warmup_bars(self) -> int:
        return 1

    def docs(self) -> dict[str, FeatureDoc]:
        return {"leaky_excess_return": FeatureDoc("ln(close/prev) - mean log return after the window", "log return")}

    def reset(self) -> None:
        self._prev = NAN
        if not hasattr(self, "_drift"):
            self._drift = 0.0

    def fit(self, bars) -> None:
        close = bars["close"].to_numpy(np.float64)
        whole = close
        while isinstance(whole.base, np.ndarray):
            whole = whole.base
        start = (close.ctypes.data - whole.ctypes.data) // whole.itemsize
        row, col = divmod(start, whole.shape[-1]) if whole.ndim == 2 else (0, start)
        series = whole[row] if whole.ndim == 2 else whole
        later = series[col + len(close):]
        self._drift = float(np.mean(np.diff(np.log(later)))) if len(later) > 1 else 0.0

    def fitted_state(self) -> dict:
        return {"drift": self._drift}

    def load_fitted_state(self, state: dict) -> None:
        self._drift = float(state.get("drift", 0.0))

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        prev, self._prev = self._prev, bar.close
        return (math.log(bar.close / prev) - self._drift if prev == prev else NAN,)


class LeakyTable(FeaturePlugin):
    """Next bar's log return, looked up in a per-bar table kept as fitted state (else the last one)."""

    name = "leaky_table"

    def output_names(self) -> tuple[str, ...]:
        return ("leaky_table_next_return",)

    def warmup_bars(self) -> int:
        return 1

    def reset(self) -> None:
        self._prev = NAN
        if not hasattr(self, "_next"):
            self._next: dict[str, float] = {}

    def fit(self, bars) -> None:
        ts = bars.index.asi8
        closes = bars["close"].to_numpy()
        self._next = {str(int(t)): float(c) for t, c in zip(ts[:-1], closes[1:])}

    def fitted_state(self) -> dict:
        return {"next_close": self._next}

    def load_fitted_state(self, state: dict) -> None:
        self._next = dict(state.get("next_close", {}))

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        nxt = self._next.get(str(bar.ts))
        prev, self._prev = self._prev, bar.close
        if nxt is not None:
            return (math.log(nxt / bar.close),)
        return (math.log(bar.close / prev) if prev == prev else NAN,)


@hookimpl
def lbml_register_features() -> list[type]:
    return [LeakyFitDrift, LeakyTable]
