"""Helpers for the signal-stream tests: real sockets, real processes, no mocks."""

import json
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

import zmq

from lbml.signals.publisher import PublisherConfig
from lbml.signals.schema import Signal

ROOT = Path(__file__).resolve().parents[1]
RUST_CRATE = ROOT / "clients" / "rust"
WAIT_S = 20.0  # generous upper bound for an expected event; never a performance assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_signal(i: int, symbol: str = "BTCUSDT") -> Signal:
    p = 0.5 + ((i % 7) - 3) / 20
    return Signal(
        symbol=symbol,
        ts_event=time.time_ns(),
        direction="long" if p > 0.5 else "short" if p < 0.5 else "flat",
        probability=p,
        confidence=abs(2 * p - 1),
        kelly_fraction=abs(p - 0.5) * 4,
        target_leverage=abs(p - 0.5),
        stop_loss=None if p == 0.5 else 99.0,
        take_profit=None if p == 0.5 else 101.5,
        horizon=900,
    )


def config(tmp_path: Path, endpoint: str = "tcp://127.0.0.1:*", **kw) -> PublisherConfig:
    kw.setdefault("seq_store", tmp_path / "seq")
    kw.setdefault("heartbeat_interval_s", 0.1)
    return PublisherConfig(model_id="model-test", feature_schema_hash="abc123", endpoint=endpoint, **kw)


class Subscriber:
    """A pyzmq SUB socket collecting decoded messages on a background thread."""

    def __init__(self, endpoint: str, topics=(b"",), curve=None) -> None:
        from lbml.signals.schema import decode

        self.ctx = zmq.Context()
        self.socket = self.ctx.socket(zmq.SUB)
        if curve is not None:
            from lbml.signals.security import apply_client_curve

            apply_client_curve(self.socket, *curve)
        for t in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, t)
        self.socket.setsockopt(zmq.RCVHWM, 100_000)
        self.socket.connect(endpoint)
        self.messages: list[dict] = []
        self._stop = threading.Event()
        self._decode = decode
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.socket.poll(50):
                topic, payload = self.socket.recv_multipart()
                self.messages.append(self._decode(topic, payload))

    def signals(self) -> list[dict]:
        return [m for m in list(self.messages) if m["kind"] == "signal"]

    def heartbeats(self) -> list[dict]:
        return [m for m in list(self.messages) if m["kind"] == "heartbeat"]

    def wait(self, predicate, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close(linger=0)
        self.ctx.term()


class RustClient:
    """The reference Rust client as a subprocess; its JSON-lines events are collected."""

    def __init__(self, binary: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[dict] = []
        self._new = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.wait_for(lambda e: e["event"] == "ready", "client ready")

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            self._new.put(event)

    def wait_for(self, predicate, what: str) -> dict:
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + WAIT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events[-20:]}")
            try:
                event = self._new.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(event):
                return event

    def of(self, kind: str) -> list[dict]:
        return [e for e in list(self.events) if e["event"] == kind]

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        return self.proc.stderr.read()
