"""Graceful degradation of the model: a guard between the SignalActor and the model plugin.

If the model raises, or answers later than ``budget_s``, the guard withholds the prediction (returns
NaN, which ``SignalActor`` does not publish), so the strategy opens nothing new while the stops and
take-profits already at the venue stay active. The session is then *degraded* (``status.degraded``
holds the reason, logged once) until ``recover_after`` consecutive calls succeed within budget;
predictions made meanwhile are withheld too.

A withheld call depends on the wall clock, so every decision is made durable (``decisions``, keyed by
the call number): a restarted session replays the recorded decisions instead of re-timing the
model, and rebuilds exactly the signals it had published.
"""

import logging
import math
import time

import numpy as np

log = logging.getLogger(__name__)

RECOVERING = "recovering"


class ModelGuard:
    """Wraps a ``ModelPlugin``'s per-bar ``predict_up_one`` with error and time-budget handling."""

    def __init__(self, model, budget_s: float, status, decisions: dict[int, str], replay_calls: int,
                 recover_after: int = 5) -> None:
        self.model = model
        self.budget_s = budget_s
        self.status = status
        self.decisions = dict(decisions)
        self.replay_calls = replay_calls
        self.recover_after = recover_after
        self.calls = 0
        self.new_decisions: list[tuple[int, str]] = []
        self._good_streak = recover_after

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict_up_one(self, x: np.ndarray) -> float:
        self.calls += 1
        n = self.calls
        if n <= self.replay_calls and n in self.decisions:  # a restart follows the recorded decisions
            return self._apply(self.decisions[n])
        if n <= self.replay_calls:
            return self._good(self.model.predict_up_one(x), n, record=False)
        started = time.perf_counter()
        try:
            p = self.model.predict_up_one(x)
        except Exception as exc:  # noqa: BLE001 - any model failure degrades, none crashes the node
            return self._record(n, f"error: model raised {type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        if elapsed > self.budget_s:
            return self._record(n, f"timeout: model took {elapsed * 1e3:.0f} ms (budget {self.budget_s * 1e3:.0f} ms)")
        return self._good(p, n, record=True)

    def _good(self, p: float, n: int, record: bool) -> float:
        if self._good_streak + 1 < self.recover_after:
            if record:
                return self._record(n, RECOVERING)
            self._good_streak += 1
            return math.nan
        self._good_streak += 1
        if self.status.degraded is not None:
            log.warning("model recovered after %d good predictions", self.recover_after)
            self.status.degraded = None
        return p

    def _record(self, n: int, decision: str) -> float:
        self.decisions[n] = decision
        self.new_decisions.append((n, decision))
        return self._apply(decision, announce=True)

    def _apply(self, decision: str, announce: bool = False) -> float:
        if decision == RECOVERING:
            self._good_streak += 1
            return math.nan
        self._good_streak = 0
        if announce and self.status.degraded is None:
            log.warning("model degraded (%s): no new positions until it recovers", decision)
        self.status.degraded = decision
        return math.nan

    def take_new_decisions(self) -> list[tuple[int, str]]:
        out, self.new_decisions = self.new_decisions, []
        return out
