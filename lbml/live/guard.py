"""Graceful degradation of the model: a guard between the SignalActor and the model plugin.

If the model raises, or does not answer within ``budget_s``, the guard withholds the prediction
(returns NaN, which ``SignalActor`` does not publish), so the strategy opens nothing new while the
stops and take-profits already at the venue stay active. The model runs on a worker thread and the
guard waits at most the budget, so a model that hangs (never returns) is detected on time and does
not freeze the node: its late call is abandoned, and while it is still running the next calls wait
(again at most the budget) for it before running, then are withheld if it has not returned. A call
that returns after its deadline is discarded. The session is then *degraded* (``status.degraded``
holds the reason, logged once) until ``recover_after`` consecutive calls succeed within budget;
predictions made meanwhile are withheld too.

A withheld call depends on the wall clock, so every decision is made durable (``decisions``, keyed by
the call number): a restarted session replays the recorded decisions instead of re-timing the
model, and rebuilds exactly the signals it had published.
"""

import logging
import math
import threading
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
        self._worker = _ModelWorker()

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict_up_one(self, x: np.ndarray) -> float:
        self.calls += 1
        n = self.calls
        if n <= self.replay_calls and n in self.decisions:  # a restart follows the recorded decisions
            return self._apply(self.decisions[n])
        if n <= self.replay_calls:
            return self._good(self.model.predict_up_one(x), n, record=False)
        budget_ms = f"{self.budget_s * 1e3:.0f} ms"
        outcome = self._worker.call(self.model.predict_up_one, x, self.budget_s)
        if outcome.kind == "busy":
            return self._record(n, f"timeout: an earlier model call has not returned for {outcome.waited_s:.1f} s "
                                   f"(budget {budget_ms})")
        if outcome.kind == "late":
            return self._record(n, f"timeout: model did not answer within {budget_ms}")
        if outcome.kind == "error":
            exc = outcome.value
            return self._record(n, f"error: model raised {type(exc).__name__}: {exc}")
        return self._good(outcome.value, n, record=True)

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


class _Outcome:
    __slots__ = ("kind", "value", "waited_s")

    def __init__(self, kind: str, value=None, waited_s: float = 0.0) -> None:
        self.kind = kind  # "ok", "error", "late" (no answer in time) or "busy" (an earlier call still runs)
        self.value = value
        self.waited_s = waited_s


class _ModelWorker:
    """One daemon thread running one model call at a time; callers wait at most a deadline.

    A daemon thread, so a model that never returns cannot keep the process alive at exit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._request = threading.Condition(self._lock)
        self._job: tuple | None = None  # (fn, x, done event, result holder)
        self._running: threading.Event | None = None  # the done event of the call in progress
        self._running_since = 0.0
        self._thread: threading.Thread | None = None

    def call(self, fn, x, timeout_s: float) -> _Outcome:
        deadline = time.monotonic() + timeout_s
        running = self._running
        if running is not None and not running.wait(timeout_s):
            return _Outcome("busy", waited_s=time.monotonic() - self._running_since)
        done, holder = threading.Event(), []
        with self._lock:
            self._ensure_thread()
            self._running, self._running_since = done, time.monotonic()
            self._job = (fn, x, done, holder)
            self._request.notify()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            return _Outcome("late")
        return holder[0]

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lbml-model", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._job is None:
                    self._request.wait()
                fn, x, done, holder = self._job
                self._job = None
            try:
                holder.append(_Outcome("ok", fn(x)))
            except Exception as exc:  # noqa: BLE001 - handed back to the guard, which degrades
                holder.append(_Outcome("error", exc))
            done.set()
