"""The retrain policy of a paper session (``[paper.retrain]``).

After every traded bar the session has committed, ``Retrainer.on_bar`` decides:

- **Trigger** (``RetrainPolicy``, a function of feed time, bar count and the drift flag): every
  ``every_days`` of feed time since the session's first bar or the last trigger, and/or when the
  session's drift checks flagged since the last trigger, never within ``min_bars_between`` bars of the last trigger, and
  never while a retrain runs. The window is the last ``window_bars`` bars (or ``window_days``) up
  to the trigger bar, read from what the session has seen, none after (``lbml.live.seen_market``:
  a replay's market, or for a live feed the history before the paper window followed by the bars
  and events the session kept in its state database with each commit).
- **Train** in a separate process (``lbml.live.retrain_job``) with lbml's training path (purged CV,
  EV margin, gate evidence); the bar loop goes on with the old model meanwhile. The candidate is
  saved in the normal artifact format under ``STATE_DIR/models/``.
- **Gate**: the candidate is judged by the same edge gate as deployment (``lbml.research.gate.gate_decision``
  with the scenario's ``[gate]``, no override). It goes in only if the gate opens (or is disabled);
  ``lbml.live.model_swap`` swaps everything it carries. Loading, gating and the candidate pipeline's
  replay run in the job's thread as soon as the process ends (up to the last bar committed then),
  off the bar loop; the verdict takes effect at the first bar committed after the process ended,
  where the bar loop only catches the prepared pipeline up over the bars since (none, or a few).

Every retrain is a row of the state database's ``retrains`` table: reason, trigger item/bar/time,
window, status (running, accepted, rejected, failed), both models' ids and paths, the gate verdict
and, for an accepted candidate, the item after which it trades (``swap_pos``), the first bar it
predicts (``swap_bar``) and the close of the last bar the old model predicted (``swap_ts``).

Why the swap point is recorded and not recomputed: when the training process ends depends on the
machine, so the bar at which a candidate goes in is not a function of the data. The row is
written durably before the swap and before any bar predicted by the new model is committed; a
restarted session replays its items and applies the recorded rows at the same items (triggers
are not re-decided while replaying), so the keeper's verification sees exactly the first run's
signals. A retrain interrupted by a crash (status still ``running``) is relaunched at start-up
with the same window (training is deterministic given it); the old model trades until then, and
nothing else depends on the interrupted job.
"""

import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from lbml.data.frames import MarketData
from lbml.errors import LbmlError
from lbml.research.gate import gate_decision
from lbml.live.model_swap import PreparedSwap, SwapTargets, apply_swap, catch_up, load_candidate, prepare_swap
from lbml.live.retrain_job import JobSpec, RetrainJob
from lbml.live.seen_market import LiveMarket, ReplayMarket
from lbml.live.state import StateStore
from lbml.plugins import PluginRegistry
from lbml.scenario import RetrainConfig, Scenario

log = logging.getLogger(__name__)

RUNNING, ACCEPTED, REJECTED, FAILED = "running", "accepted", "rejected", "failed"
DAY_NS = 86_400 * 10**9
MIN_TRAINING_BARS = 300  # bars with every feature defined a window must have at the least


@dataclass
class RetrainPolicy:
    """When to retrain and on which bars; deterministic given the bars and drift flags it is shown."""

    config: RetrainConfig
    anchor_ts: int | None = None  # the session's first bar, then the last trigger
    last_bar: int | None = None
    drift_flags: int = 0  # flagged drift checks up to the last trigger

    def observe(self, ts: int) -> None:
        if self.anchor_ts is None:
            self.anchor_ts = ts

    def due(self, ts: int, bar: int, drift_flags: int) -> str | None:
        """The reason to retrain at bar number ``bar`` (closing at ``ts``), or None; ``drift_flags``
        counts the session's flagged drift checks (one flagged since the last trigger triggers)."""
        self.observe(ts)
        if self.last_bar is not None and bar - self.last_bar < self.config.min_bars_between:
            return None
        every = self.config.every_days
        if every is not None and ts - self.anchor_ts >= every * DAY_NS:
            return "schedule"
        if self.config.on_drift and drift_flags > self.drift_flags:
            return "drift"
        return None

    def triggered(self, ts: int, bar: int, drift_flags: int) -> None:
        self.anchor_ts, self.last_bar, self.drift_flags = ts, bar, drift_flags

    def window(self, index: pd.DatetimeIndex, ts: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last bar of the training window ending at the bar closing at ``ts``."""
        end = int(index.searchsorted(pd.Timestamp(ts, tz="UTC"), side="right")) - 1
        if self.config.window_bars is not None:
            start = max(0, end - self.config.window_bars + 1)
        else:
            start = int(index.searchsorted(index[end] - pd.Timedelta(days=self.config.window_days), side="right"))
        return index[start], index[end]


@dataclass(frozen=True)
class _Verdict:
    """What the job's thread found: the candidate, the gate's decision, the prepared swap, or why not."""

    artifact: object = None  # LoadedArtifact (None: it could not be loaded)
    decision: object = None  # GateDecision
    swap: PreparedSwap | None = None
    swap_pos: int = 0  # the item of the last bar the swap's pipeline has consumed
    error: str | None = None


class Retrainer:
    """Runs the policy for one session; see the module docstring."""

    def __init__(
        self,
        config: RetrainConfig,
        *,
        scenario: Scenario,
        market: MarketData,
        seen: ReplayMarket | LiveMarket,
        registry: PluginRegistry,
        store: StateStore,
        targets: SwapTargets,
        strategy_cls: type,
        model_path: Path,
        resume_pos: int,
        plugins_dir: Path | None = None,
    ) -> None:
        self.policy = RetrainPolicy(config)
        self._scenario = scenario
        self._market = market
        self._seen = seen
        self._registry = registry
        self._store = store
        self._targets = targets
        self._strategy_cls = strategy_cls
        self._model_path = str(model_path)
        self._resume_pos = resume_pos
        self._plugins_dir = plugins_dir
        self._rows = store.retrains()
        self._job: RetrainJob | None = None
        self._job_row: dict | None = None
        self._committed = (resume_pos, 0)  # the last traded bar committed (item, close): read by the job's thread
        self.swap_wait_s: list[float] = []  # bar-loop time of each swap (measured; README "Retraining")
        self._publish_status()

    # -- the session's calls ------------------------------------------------------------------------
    def start(self) -> None:
        """Relaunch a retrain a crash interrupted (its row still says running)."""
        for row in self._rows:
            if row["status"] == RUNNING:
                log.warning("retrain %d was interrupted: training it again on the same window", row["i"])
                self._launch(row)

    def on_bar(self, pos: int, ts: int, bar: int) -> None:
        """After traded bar number ``bar`` (closing at ``ts``, feed item ``pos``) was committed or verified."""
        self.policy.observe(ts)
        self._committed = (pos, ts)
        if pos <= self._resume_pos:
            self._replay(pos, ts, bar)
            return
        self._collect(pos, ts, bar)
        if self._job is None:
            reason = self.policy.due(ts, bar, self._targets.status.drift_flags)
            if reason is not None:
                self._trigger(reason, pos, ts, bar)
        self._publish_status()

    def close(self) -> None:
        """Stop a running job (the session ends): its row stays ``running`` and is relaunched next time."""
        if self._job is not None:
            self._job.cancel()
            self._job = None

    # -- replay of the recorded rows -------------------------------------------------------------
    def _replay(self, pos: int, ts: int, bar: int) -> None:
        for row in self._rows:
            if row["trigger_pos"] == pos:
                self.policy.triggered(ts, bar, self._targets.status.drift_flags)
            if row["status"] == ACCEPTED and row["swap_pos"] == pos:
                artifact = load_candidate(Path(row["candidate_path"]), self._scenario, self._market, self._registry)
                self._swap(artifact, pos, ts)

    # -- live ------------------------------------------------------------------------------------
    def _trigger(self, reason: str, pos: int, ts: int, bar: int) -> None:
        index = self._seen.bar_index(self._scenario.data.symbol, pos)
        start, end = self.policy.window(index, ts)
        i = len(self._rows) + 1
        row = {"i": i, "reason": reason, "trigger_pos": pos, "trigger_bar": bar, "trigger_ts": ts,
               "window_start": start.value, "window_end": end.value, "started": time.time(), "status": RUNNING,
               "candidate_path": str(self._store.dir / "models" / f"retrain-{i:03d}")}
        self._store.put_retrain(row)
        self._rows.append(row)
        self.policy.triggered(ts, bar, self._targets.status.drift_flags)
        log.warning("retrain %d (%s): training on %s .. %s", i, reason, start, end)
        self._launch(row)

    def _launch(self, row: dict) -> None:
        start, end = pd.Timestamp(row["window_start"], tz="UTC"), pd.Timestamp(row["window_end"], tz="UTC")
        spec = JobSpec(self._scenario.to_toml(), start, end, Path(row["candidate_path"]),
                       str(self._plugins_dir) if self._plugins_dir is not None else None)
        market = partial(self._seen.at, row["trigger_pos"], start, end)  # read off the bar loop, by the job's thread
        self._job = RetrainJob(self._store.dir / "retrains" / f"{row['i']:03d}", spec, market,
                               after=partial(self._judge, Path(row["candidate_path"]))).start()
        self._job_row = row

    def _judge(self, path: Path) -> "_Verdict":
        """In the job's thread, once the candidate is saved: load it, gate it and, if it goes in,
        replay its pipeline up to the last bar the session has committed (the bar loop goes on)."""
        try:
            artifact = load_candidate(path, self._scenario, self._market, self._registry)
        except LbmlError as exc:
            return _Verdict(error=str(exc))
        decision = gate_decision(artifact.manifest.get("metrics", {}), self._scenario.gate,
                                 strategy_cls=self._strategy_cls)
        if not decision.trades:
            return _Verdict(artifact, decision)
        pos, ts = self._committed
        if ts < artifact.training_window.end.value:  # a restart still replaying: the bar loop prepares it all
            return _Verdict(artifact, decision)
        try:
            return _Verdict(artifact, decision, self._prepare(artifact, pos, ts), pos)
        except LbmlError as exc:  # e.g. a feature plugin refusing the candidate's fitted state
            return _Verdict(artifact, decision, error=str(exc))

    def _collect(self, pos: int, ts: int, bar: int) -> None:
        job, row = self._job, self._job_row
        if job is None or not job.ended:
            return
        # The first bar after the training process ended decides (as before the work moved off the
        # bar loop); the job's thread has normally judged and prepared the candidate by now.
        t0 = time.perf_counter()
        job.wait()
        waited = time.perf_counter() - t0
        self._job = self._job_row = None
        row |= {"finished": time.time(), "old_model_id": self._targets.status.model_id,
                "old_model_path": self._model_path}
        if job.returncode != 0:
            self._finish(row | {"status": FAILED, "error": job.error})
            return
        verdict = job.result
        if isinstance(verdict, Exception):
            raise verdict
        if verdict.artifact is None:
            self._finish(row | {"status": FAILED, "error": verdict.error})
            return
        row |= {"candidate_id": verdict.artifact.model_id, "gate": verdict.decision.to_dict()}
        if not verdict.decision.trades:
            self._finish(row | {"status": REJECTED})
            return
        if verdict.error is not None:
            self._finish(row | {"status": FAILED, "error": verdict.error})
            return
        until = pd.Timestamp(ts, tz="UTC")
        try:
            if verdict.swap is None:
                swap = self._prepare(verdict.artifact, pos, ts)
            elif until > verdict.swap.until:  # the bars committed since the thread's replay
                since = verdict.swap.until
                market = self._seen.at(pos, since, until, after_pos=verdict.swap_pos)
                swap = catch_up(verdict.swap, self._scenario, market, until)
            else:
                swap = verdict.swap
        except LbmlError as exc:
            self._finish(row | {"status": FAILED, "error": str(exc)})
            return
        caught_up = time.perf_counter() - t0
        # durable before the new model predicts anything: a restart replays to this very item
        self._finish(row | {"status": ACCEPTED, "swap_pos": pos, "swap_bar": bar + 1, "swap_ts": ts})
        committed = time.perf_counter() - t0
        apply_swap(swap, self._targets)
        self._model_path = row["candidate_path"]
        self.swap_wait_s.append(time.perf_counter() - t0)
        log.warning("retrain %d: the bar loop spent %.3f s swapping in the candidate (waiting for the job's thread "
                    "%.3f s, catching up %.3f s, the durable row %.3f s, the swap %.3f s; the thread had replayed its "
                    "pipeline up to %s)", row["i"], self.swap_wait_s[-1], waited, caught_up - waited,
                    committed - caught_up, self.swap_wait_s[-1] - committed,
                    verdict.swap.until if verdict.swap is not None else "nothing")

    def _finish(self, row: dict) -> None:
        self._store.put_retrain(row)
        self._rows[row["i"] - 1] = row
        log.warning("retrain %d %s%s", row["i"], row["status"],
                    f": {row['gate']['reason']}" if row.get("gate") and "reason" in row["gate"]
                    else f": {row['error']}" if row.get("error") else "")

    def _prepare(self, artifact, pos: int, ts: int):
        until = pd.Timestamp(ts, tz="UTC")
        market = self._seen.at(pos, artifact.training_window.start, until)
        return prepare_swap(artifact, self._scenario, market, self._registry, until)

    def _swap(self, artifact, pos: int, ts: int) -> None:
        swap = self._prepare(artifact, pos, ts)
        apply_swap(swap, self._targets)
        self._model_path = str(artifact.path)

    def _publish_status(self) -> None:
        counts = {s: sum(r["status"] == s for r in self._rows) for s in (ACCEPTED, REJECTED, FAILED)}
        self._targets.status.retrain = counts | {
            "running": self._job_row["i"] if self._job_row is not None else None,
            "model_path": self._model_path,
            "last": _summary(self._rows[-1]) if self._rows else None,
        }


def _summary(row: dict) -> dict:
    keys = ("i", "reason", "status", "trigger_ts", "swap_bar", "candidate_id", "old_model_id", "error")
    out = {k: row.get(k) for k in keys}
    gate = row.get("gate")
    out["gate"] = gate.get("status") if gate else None
    return out


def check_retrain(scenario: Scenario, strategy_cls: type, warmup_bars: int, bar_minutes: int) -> None:
    """Refuse (``ConfigError``) a ``[paper.retrain]`` this session cannot run."""
    from lbml.errors import ConfigError

    config = scenario.paper.retrain
    window = config.window_bars or int(config.window_days * 1440 / bar_minutes)
    if window < warmup_bars + MIN_TRAINING_BARS:
        raise ConfigError(f"[paper.retrain]: a window of {window} bars leaves fewer than {MIN_TRAINING_BARS} bars after "
                          f"the features' warm-up of {warmup_bars} bars (features are computed from the window's start)")

    if getattr(strategy_cls, "trades_predictions", True) and not callable(getattr(strategy_cls, "reprice", None)):
        raise ConfigError(f"[paper.retrain]: strategy {strategy_cls.__name__} has no reprice(ev_margin, payoff, costs, "
                          "sigma_1m) to take a retrained model's EV margin and pricing")


def strategy_pricing(scenario: Scenario, bar_minutes: int, ev_margin: float, pricing) -> dict:
    """The strategy's ``reprice`` arguments for a model's EV margin and pricing (as the node builds them)."""
    from lbml.engine.backtest import strategy_config_kwargs

    kwargs = strategy_config_kwargs(scenario, bar_minutes, ev_margin, pricing)
    return {key: kwargs[key] for key in ("ev_margin", "payoff", "costs", "sigma_1m")}


def after_traded_bars(on_item, status, on_bar, on_error):
    """Wrap the feed's ``on_item`` (the state keeper's): call ``on_bar(pos, ts, bar)`` after each
    item that committed (or verified) a traded bar; an error stops the session through ``on_error``."""
    seen = [status.bars]

    def call(pos: int, event) -> None:
        on_item(pos, event)
        if event is not None or status.bars == seen[0]:
            return
        seen[0] = status.bars
        try:
            on_bar(pos, status.market_ts, status.bars)
        except Exception as exc:  # noqa: BLE001 - the session stops with the reason, state committed
            on_error(f"retrain: {exc}")

    return call
