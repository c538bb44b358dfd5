"""The signal publisher: an XPUB socket that never blocks the caller, plus a heartbeat thread.

``publish`` runs on the trading thread. It commits the next sequence number, encodes the payload
and sends it with ``zmq.NOBLOCK``. The socket is an XPUB with ZeroMQ's PUB semantics: each
subscriber has its own queue of ``SNDHWM`` messages, and when one is full *that* subscriber loses
the message (it sees the jump in ``seq``, or heartbeats' ``last_seq`` ahead of it) while the others
receive it. ``XPUB_NODROP`` was used before: one stalled subscriber then made every send fail, so
healthy subscribers lost messages too (8,237 of 20,000 delivered in issue #18). Sending never
blocks the caller. ``dropped`` counts sends the socket refused as a whole (none in normal operation).

Late joiners: the publisher keeps the latest signal of each topic (a last-value cache). The socket
reports every subscription (``XPUB_VERBOSE``); when one arrives, the cached signals it matches are
sent again, unchanged (same ``seq``), within one heartbeat interval or at the next publish. So a
subscriber that connects at start-up, or after a restart of its own, gets the current signal at
once instead of waiting for the next bar; subscribers that already had it see a repeated ``seq`` and
ignore it.

A background thread sends a heartbeat every ``heartbeat_interval_s`` seconds of wall-clock time
(also when no bars arrive, which is what lets subscribers detect a stale feed). ZeroMQ sockets are
not thread-safe; both threads use the socket only under one lock (a full memory barrier).
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zmq

from lbml.signals.schema import (
    HEARTBEAT_TOPIC,
    SCHEMA_VERSION,
    Encoding,
    FeedStatus,
    Signal,
    SignalsError,
    encode,
    signal_topic,
)
from lbml.signals.security import CurveConfig, apply_server_curve, check_bind_allowed, start_authenticator
from lbml.signals.seqstore import SequenceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublisherConfig:
    """Everything a publisher needs; ``model_id`` and ``feature_schema_hash`` name the model."""

    model_id: str
    feature_schema_hash: str
    endpoint: str = "tcp://127.0.0.1:5557"
    publisher_id: str = "lbml"
    encoding: Encoding = "json"
    heartbeat_interval_s: float = 1.0
    sndhwm: int = 10_000
    seq_store: Path = Path("state/signals.seq")
    seq_fsync: bool = False
    curve: CurveConfig | None = None
    allow_insecure: bool = False
    degraded_after_s: float = 90.0
    stale_after_s: float = 180.0


@dataclass(frozen=True)
class PublisherStats:
    published: int
    dropped: int
    heartbeats: int
    last_seq: int
    peers: int = 0  # connections to the socket now (accepted minus disconnected)


class SignalPublisher:
    """Publish signals and heartbeats on a PUB-compatible (XPUB) socket.

    Parameters
    ----------
    config
        Endpoint, identity, encoding, limits and security.
    health
        Optional: the session's own verdict ("degraded" when the model misbehaves, "stale" when
        the feed stalled), which takes precedence over the publisher's bar-age rule when not None.

    Raises
    ------
    SignalsError
        If the endpoint is refused (non-loopback without CURVE), cannot be bound, or a key is bad.
    """

    def __init__(
        self,
        config: PublisherConfig,
        health: Callable[[], FeedStatus | None] | None = None,
        on_heartbeat: Callable[[PublisherStats], None] | None = None,
    ) -> None:
        check_bind_allowed(config.endpoint, config.curve, config.allow_insecure)
        self._health = health
        self._on_heartbeat = on_heartbeat
        self._monitor = None
        self._peers = 0
        if config.heartbeat_interval_s <= 0 or config.sndhwm < 1:
            raise SignalsError("signals: heartbeat_interval_s and sndhwm must be positive")
        self._config = config
        self._ctx = zmq.Context()
        self._auth = None
        self._seq: SequenceStore | None = None
        try:
            self._socket = self._ctx.socket(zmq.XPUB)
            self._socket.setsockopt(zmq.SNDHWM, config.sndhwm)
            self._socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, for the last-value cache
            self._socket.setsockopt(zmq.LINGER, 500)
            if config.curve is not None:
                self._auth = start_authenticator(self._ctx, config.curve.authorized_keys_dir)
                apply_server_curve(self._socket, config.curve.server_secret_file)
            try:
                self._socket.bind(config.endpoint)
            except zmq.ZMQError as exc:
                raise SignalsError(f"signals.endpoint: cannot bind {config.endpoint}: {exc}") from None
            self._seq = SequenceStore(config.seq_store, fsync=config.seq_fsync)
            self._monitor = self._socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        except BaseException:
            self._teardown()
            raise
        self._lock = threading.Lock()
        self._published = 0
        self._dropped = 0
        self._dropped_reported = 0
        self._heartbeats = 0
        self._latest: dict[bytes, bytes] = {}  # topic -> encoded payload of its latest signal
        self._last_bar_ts: int | None = None
        self._last_bar_wall: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="lbml-signals-heartbeat", daemon=True)
        self._thread.start()

    def name_model(self, model_id: str) -> None:
        """Name ``model_id`` in the signals and heartbeats from now on (a paper session's retrained model)."""
        self._config = replace(self._config, model_id=model_id)

    @property
    def config(self) -> PublisherConfig:
        return self._config

    @property
    def endpoint(self) -> str:
        """The bound endpoint (resolves a wildcard port such as ``tcp://127.0.0.1:*``)."""
        return self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def publish(self, signal: Signal, seq: int | None = None) -> int:
        """Send one signal without blocking; return its sequence number (also when dropped).

        Without ``seq`` the next number of the sequence file is used. A caller that numbers its
        signals durably itself (a paper session: the n-th prediction of the session) passes ``seq``:
        a signal re-published after a crash then goes out with the number it had, and a subscriber
        that keeps the last seq it processed drops the copy.
        """
        if seq is not None and seq < 1:
            raise SignalsError(f"signals: seq must be >= 1, got {seq}")
        with self._lock:
            if seq is None:
                seq = self._seq.next()
            else:
                self._seq.advance_to(seq)
            payload = {
                "schema_version": SCHEMA_VERSION,
                "kind": "signal",
                "publisher_id": self._config.publisher_id,
                "seq": seq,
                "ts_event": signal.ts_event,
                "ts_publish": time.time_ns(),
                "symbol": signal.symbol,
                "direction": signal.direction,
                "probability": signal.probability,
                "confidence": signal.confidence,
                "kelly_fraction": signal.kelly_fraction,
                "target_leverage": signal.target_leverage,
                "stop_loss": signal.stop_loss,
                "take_profit": signal.take_profit,
                "horizon": signal.horizon,
                "model_id": self._config.model_id,
                "feature_schema_hash": self._config.feature_schema_hash,
            }
            self._last_bar_ts = signal.ts_event
            self._last_bar_wall = time.monotonic()
            self._drain_subscriptions()
            topic = signal_topic(signal.symbol).encode()
            data = encode(payload, self._config.encoding)
            self._latest[topic] = data
            if self._send_frames(topic, data):
                self._published += 1
            return seq

    def stats(self) -> PublisherStats:
        """Return counters: published and dropped signals, heartbeats, last sequence number."""
        with self._lock:
            return self._stats()

    def _stats(self) -> PublisherStats:
        self._count_peers()
        return PublisherStats(self._published, self._dropped, self._heartbeats, self._seq.last, self._peers)

    def close(self) -> None:
        """Send a last heartbeat, stop the thread, flush briefly and release the socket."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._heartbeat()
        self._teardown()

    def __enter__(self) -> "SignalPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (callers hold self._lock) ------------------------------------------------------
    def _send(self, topic: str, payload: dict[str, Any]) -> bool:
        return self._send_frames(topic.encode(), encode(payload, self._config.encoding))

    def _send_frames(self, topic: bytes, data: bytes) -> bool:
        try:
            self._socket.send_multipart([topic, data], flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            self._dropped += 1
            return False

    def _status(self) -> FeedStatus:
        override = self._health() if self._health is not None else None
        if override is not None:
            return override
        if self._last_bar_wall is None:
            return "stale"
        age = time.monotonic() - self._last_bar_wall
        if age > self._config.stale_after_s:
            return "stale"
        if age > self._config.degraded_after_s or self._dropped > self._dropped_reported:
            return "degraded"
        return "healthy"

    def _heartbeat(self) -> None:
        self._drain_subscriptions()
        payload = {
            "schema_version": SCHEMA_VERSION,
            "kind": "heartbeat",
            "publisher_id": self._config.publisher_id,
            "ts_publish": time.time_ns(),
            "model_id": self._config.model_id,
            "last_seq": self._seq.last,
            "last_bar_ts": self._last_bar_ts,
            "status": self._status(),
            "dropped": self._dropped,
            "interval_s": self._config.heartbeat_interval_s,
        }
        self._dropped_reported = self._dropped
        self._send(HEARTBEAT_TOPIC, payload)
        self._heartbeats += 1
        if self._on_heartbeat is not None:
            self._on_heartbeat(self._stats())

    def _count_peers(self) -> None:
        # The socket monitor reports each connection accepted and each one lost (the number of
        # subscribers, counting a peer that has not subscribed yet).
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor is not None:
            try:
                event = recv_monitor_message(self._monitor, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._peers += 1
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._peers = max(0, self._peers - 1)

    def _drain_subscriptions(self) -> None:
        # XPUB queues (un)subscription notices for the application: answer each subscription with
        # the cached signals it matches (the last-value cache), and never let the notices pile up.
        while True:
            try:
                notice = self._socket.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if notice[:1] != b"\x01":
                continue
            prefix = notice[1:]
            for topic, data in self._latest.items():
                if topic.startswith(prefix):
                    self._send_frames(topic, data)

    def _heartbeat_loop(self) -> None:
        interval = self._config.heartbeat_interval_s
        while not self._stop.is_set():
            with self._lock:
                self._heartbeat()
            self._stop.wait(interval)

    def _teardown(self) -> None:
        if getattr(self, "_monitor", None) is not None:
            self._socket.disable_monitor()
            self._monitor.close(0)
            self._monitor = None  # stats() after close() reads the counters, not the closed socket
        if getattr(self, "_socket", None) is not None:
            self._socket.close()
        if self._seq is not None:
            self._seq.close()
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
