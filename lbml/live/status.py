"""What a running paper session is doing, for people (a console line) and for other actors.

``PaperStatus`` is one mutable object per session, passed explicitly to the components that fill it
(the state keeper, the feed, the model guard) and to those that read it (the status actor and, via
the node builder's extra actors, a signal publisher). ``replaying`` is true while a restarted
session rebuilds its state from processed events: signals regenerated then carry sequence numbers
that were already published (``last_durable_signal_seq``) and must not be sent again.
"""

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lbml.atomic import write_atomic
from lbml.errors import LbmlError, StorageError, is_no_space
from lbml.live.state import StateError
from lbml.nautilus.trading import Actor, ActorConfig


@dataclass
class PaperStatus:
    state: str = "starting"  # starting | replaying | live | stopped
    model_id: str = ""
    feature_schema_hash: str = ""
    ev_margin: float = 0.0  # the model's out-of-fold margin above break-even (trading rule)
    pricing: dict | None = None  # the model's trade pricing (lbml.pricing.Pricing.to_dict)
    edge_gate: str = "open"  # open | overridden | disabled (a closed gate does not start a session)
    replaying: bool = False
    market_ts: int = 0
    items: int = 0
    bars: int = 0
    equity: float = 0.0
    balance: float = 0.0
    position: float = 0.0
    exposure: float = 0.0  # notional of the open position (the equity table's exposure)
    leverage: float = 0.0
    health_factor: float | None = None
    last_signal_seq: int = 0
    signals_published: int = 0  # signals this process sent on the ZeroMQ stream (replayed ones are not resent)
    signal_peers: int | None = None  # connections to the signal stream's socket (None: no publisher)
    last_durable_signal_seq: int = 0
    last_probability: float | None = None
    bar_latency_us: float | None = None
    fills: int = 0
    degraded: str | None = None
    feed_stalled: bool = False
    drift_flagged: bool = False
    drift_features: int = 0  # features the last drift check rejected (Holm-adjusted)
    drift_flags: int = 0  # drift checks that flagged so far in the session (a new one can trigger a retrain)
    drift_min_p: float | None = None  # the last drift check's smallest Holm-adjusted p-value
    bad_messages: int = 0  # live feed messages the feed guard quarantined (lbml.live.feed_guard)
    feed_quarantine: dict[str, int] = field(default_factory=dict)  # the same, by reason
    feed_restamped: int = 0  # slightly late events stamped at the last event's time
    retrain: dict | None = None  # [paper.retrain]: counts by outcome, the running retrain, the last one

    def line(self) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.market_ts / 1e9)) if self.market_ts else "-"
        prob = "-" if self.last_probability is None else f"{self.last_probability:.3f}"
        lat = "-" if self.bar_latency_us is None else f"{self.bar_latency_us:.0f}us"
        hf = "-" if self.health_factor is None else f"{self.health_factor:.2f}"
        flags = [f for f, on in (("DEGRADED:" + str(self.degraded), self.degraded), ("FEED-STALLED", self.feed_stalled),
                                 ("DRIFT", self.drift_flagged),
                                 (f"QUARANTINED:{self.bad_messages}", self.bad_messages)) if on]
        return (f"[{self.state}] {ts} equity {self.equity:,.2f} pos {self.position:+.4f} lev {self.leverage:.2f}x "
                f"hf {hf} signal #{self.last_signal_seq} p={prob} bar {lat} bars {self.bars} fills {self.fills}"
                + (" " + " ".join(flags) if flags else ""))

    def to_json(self) -> str:
        """The status, with the writer's pid and the wall-clock time of writing (``heartbeat``): a
        monitor tells a dead session (pid gone, heartbeat old) from a live one whatever ``state`` says."""
        return json.dumps(asdict(self) | {"pid": os.getpid(), "heartbeat": time.time()}, sort_keys=True)


def status_pricing(status: PaperStatus):
    """The session model's ``lbml.pricing.Pricing`` (None when the status carries none)."""
    from lbml.pricing import Pricing

    return Pricing.from_dict(status.pricing) if status.pricing is not None else None


class StatusActorConfig(ActorConfig, frozen=True):
    interval_s: float = 1.0
    stall_after_s: float = 30.0
    console: bool = True


class StatusActor(Actor):
    """Prints the status line, writes ``status.json`` and reports a stalled feed, on a timer.

    nautilus (1.221) runs live timer callbacks on its own thread, so ``_tick`` can run at the same
    moment as ``on_stop`` on the event loop: the file is written under a lock (two writers sharing the
    temporary file made one ``os.replace`` fail, and a failing ``on_stop`` used to hang the node). A
    write that fails (a full disk) asks the session to stop through ``on_error``, once.
    """

    def __init__(
        self, config: StatusActorConfig, status: PaperStatus, feed_plan, state_dir: Path,
        on_error: Callable[[str | LbmlError], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._status = status
        self._plan = feed_plan
        self._path = Path(state_dir) / "status.json"
        self._write_lock = threading.Lock()
        self._on_error = on_error
        self.error: str | None = None

    def on_start(self) -> None:
        self.clock.set_timer("lbml-status", _seconds(self.config.interval_s), callback=self._tick)

    def on_stop(self) -> None:
        self._status.state = "stopped"
        self._write()

    def _tick(self, _event) -> None:
        status = self._status
        idle = time.monotonic() - self._plan.last_event_wall
        stalled = not self._plan.finished and idle > self.config.stall_after_s
        if stalled and not status.feed_stalled:
            self.log.warning(f"feed stalled: no market event for {idle:.0f} s")
        status.feed_stalled = stalled
        if self.config.console:
            print("\r" + status.line(), end="", file=sys.stderr, flush=True)
        self._write()

    def _write(self) -> None:
        """Replace status.json; a failure (a full disk) stops the session once, not an error a second."""
        with self._write_lock:
            if self.error is not None:
                return
            try:
                write_atomic(self._path, self._status.to_json())
            except OSError as exc:
                error = (StorageError if is_no_space(exc) else StateError)(
                    f"{self._path}: writing the status failed ({exc.strerror or exc})")
                self.error = str(error)
                if self._on_error is not None:
                    self._on_error(error)


def _seconds(value: float):
    from datetime import timedelta

    return timedelta(seconds=value)
