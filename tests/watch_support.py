"""A real ``lbml paper --feed zmq`` process fed by the test, for the metrics and dashboard tests.

The test owns the feed (an XPUB socket on loopback): it sends the scenario's own events in parts,
so between parts the session is idle and its state database, ``status.json``, the metrics endpoint
and the dashboard all describe the same moment.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import zmq

from lbml.live.events import END_OF_STREAM, TRADE, encode_event, replay_events
from lbml.live.node import paper_custom_inputs, paper_symbols
from lbml.research.training import scenario_pipeline

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def session_events(scenario, registry, prepared) -> list:
    """The events a replay session of ``scenario`` would process (what ``lbml feed serve`` sends)."""
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    symbols = paper_symbols(scenario, prepared.market, pipeline)
    return list(replay_events(prepared.market, symbols, prepared.split.test_start, None,
                              **paper_custom_inputs(pipeline)))


def events_through_bar(events: list, symbol: str, bar_ns: int, n_bars: int) -> int:
    """How many leading events cover ``n_bars`` bars of ``symbol`` and close the last one (one
    trade of the next bar period is included: the feed closes a bar on the first later trade)."""
    first = next(e.ts for e in events if e.kind == TRADE and e.symbol == symbol)
    end = -(-first // bar_ns) * bar_ns + (n_bars - 1) * bar_ns
    for i, e in enumerate(events):
        if e.kind == TRADE and e.symbol == symbol and e.ts > end:
            return i + 1
    return len(events)


class ControlledFeed:
    """The session's market feed: the test decides when each event goes out."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        self._sock.bind(endpoint)

    def wait_subscriber(self, timeout_s: float) -> None:
        if not self._sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise AssertionError(f"no paper session subscribed to {self.endpoint} within {timeout_s:.0f} s")
        self._sock.recv()

    def send(self, events) -> None:
        for event in events:
            self._sock.send(encode_event(event))

    def send_raw(self, messages: list[bytes]) -> None:
        for message in messages:
            self._sock.send(message)

    def end(self) -> None:
        self._sock.send(END_OF_STREAM)

    def close(self) -> None:
        self._sock.close(linger=1000)
        self._ctx.term()


def start_paper(scenario_file: Path, model: Path, state: Path, feed: str, log: Path, *extra: str,
                publish: str | None = None) -> subprocess.Popen:
    """``lbml paper SCENARIO --feed zmq`` in a child process (its own runs folder, quiet console),
    publishing its signals on ``publish`` (default: a free loopback port)."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "LBML_PATHS__RUNS_DIR": str(state.parent / "runs")}
    argv = [sys.executable, "-m", "lbml", "paper", str(scenario_file), "--model", str(model), "--feed", "zmq",
            "--endpoint", feed, "--state", str(state), "--quiet", "--stall-after", "3600",
            "--publish-endpoint", publish or f"tcp://127.0.0.1:{free_port()}", *extra]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def read_status(state: Path) -> dict | None:
    try:
        return json.loads((state / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
