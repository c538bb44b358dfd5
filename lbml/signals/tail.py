"""``lbml signals tail``: print decoded messages and flag sequence gaps and stale heartbeats."""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq

from lbml.signals.schema import HEARTBEAT_TOPIC, SIGNAL_TOPIC_PREFIX, SignalsError, decode
from lbml.signals.security import apply_client_curve


@dataclass(frozen=True)
class TailConfig:
    endpoint: str
    topics: tuple[str, ...] = (SIGNAL_TOPIC_PREFIX, HEARTBEAT_TOPIC)
    stale_after_s: float = 3.0
    server_public_file: Path | None = None
    client_secret_file: Path | None = None
    count: int | None = None  # stop after this many signals
    duration_s: float | None = None  # stop after this long


class StreamWatcher:
    """Sequence and freshness checks over decoded messages; returns the flags to print."""

    def __init__(self, stale_after_s: float, heartbeat_gaps: bool) -> None:
        self._stale_after_s = stale_after_s
        self._heartbeat_gaps = heartbeat_gaps
        self._last_seq: int | None = None
        self._last_bar: dict[str, tuple[int, int]] = {}  # symbol -> (ts_event, seq) of its latest signal
        self._last_heartbeat: float | None = None
        self._stale = False

    def on_message(self, message: dict, now: float) -> list[str]:
        flags: list[str] = []
        if message["kind"] == "signal":
            seq = int(message["seq"])
            if self._last_seq is not None and seq <= self._last_seq:
                flags.append(f"REPEAT seq {seq} (last {self._last_seq})")
                return flags
            if self._last_seq is not None and seq > self._last_seq + 1:
                flags.append(f"GAP missed seq {self._last_seq + 1}..{seq - 1}")
            self._last_seq = seq
            # One bar, one seq: a bar's signal sent again under a new number (a publisher that
            # renumbered after a crash) would pass every seq check and be acted on twice.
            symbol, ts = message["symbol"], int(message["ts_event"])
            previous = self._last_bar.get(symbol)
            if previous is not None and ts <= previous[0]:
                flags.append(f"RENUMBERED {symbol} bar {ts} sent as seq {seq} after seq {previous[1]} "
                             f"(bar {previous[0]})")
            else:
                self._last_bar[symbol] = (ts, seq)
            return flags
        if self._stale:
            flags.append("RECOVERED heartbeat received")
            self._stale = False
        self._last_heartbeat = now
        last = int(message["last_seq"])
        if self._heartbeat_gaps and last > 0:
            if self._last_seq is not None and last > self._last_seq:
                flags.append(f"GAP missed seq {self._last_seq + 1}..{last} (heartbeat last_seq {last})")
            if self._last_seq is None or last > self._last_seq:
                self._last_seq = last
        if message["status"] != "healthy":
            flags.append(f"PUBLISHER {message['status'].upper()} (dropped {message['dropped']})")
        return flags

    def on_tick(self, now: float) -> list[str]:
        if self._last_heartbeat is None or self._stale:
            return []
        silence = now - self._last_heartbeat
        if silence > self._stale_after_s:
            self._stale = True
            return [f"STALE no heartbeat for {silence:.1f} s"]
        return []


def tail(config: TailConfig, emit: Callable[[str], None] = print) -> int:
    """Subscribe and print until interrupted, ``count`` signals or ``duration_s``; return signals seen."""
    if (config.server_public_file is None) != (config.client_secret_file is None):
        raise SignalsError("--server-key and --client-key must be given together")
    ctx = zmq.Context()
    socket = ctx.socket(zmq.SUB)
    try:
        if config.server_public_file is not None:
            apply_client_curve(socket, config.server_public_file, config.client_secret_file)
        for topic in config.topics:
            socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        try:
            socket.connect(config.endpoint)
        except zmq.ZMQError as exc:
            raise SignalsError(f"--endpoint: cannot connect to {config.endpoint}: {exc}") from None
        all_signals = any(SIGNAL_TOPIC_PREFIX.startswith(t) for t in config.topics)
        watcher = StreamWatcher(config.stale_after_s, heartbeat_gaps=all_signals)
        deadline = None if config.duration_s is None else time.monotonic() + config.duration_s
        signals = 0
        while deadline is None or time.monotonic() < deadline:
            if socket.poll(100):
                frames = socket.recv_multipart()
                now = time.monotonic()
                if len(frames) != 2:
                    emit(f"!! MALFORMED message with {len(frames)} frames")
                    continue
                try:
                    message = decode(frames[0], frames[1])
                except SignalsError as exc:
                    emit(f"!! MALFORMED {exc}")
                    continue
                emit(f"{frames[0].decode()} {json.dumps(message, separators=(',', ':'))}")
                for flag in watcher.on_message(message, now):
                    emit(f"!! {flag}")
                if message["kind"] == "signal":
                    signals += 1
                    if config.count is not None and signals >= config.count:
                        break
            for flag in watcher.on_tick(time.monotonic()):
                emit(f"!! {flag}")
        return signals
    finally:
        socket.close(linger=0)
        ctx.term()
