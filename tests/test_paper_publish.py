"""Paper trading publishes every new prediction over ZeroMQ; a resumed session continues the sequence."""

import json
import socket
import sqlite3
import threading
import time

import zmq

from lbml.engine.backtest import strategy_config_kwargs
from lbml.live.publishing import paper_publisher
from lbml.live.session import PaperOptions, run_paper
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.settings import SignalsSettings
from lbml.workflows import prepare, train_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """A real SUB socket on loopback collecting signal messages in a background thread."""

    def __init__(self, endpoint: str) -> None:
        self.messages: list[dict] = []
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"signal.")
        self._sock.setsockopt(zmq.RCVTIMEO, 100)
        self._sock.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                _topic, payload = self._sock.recv_multipart()
            except zmq.Again:
                continue
            self.messages.append(json.loads(payload))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close(0)
        self._ctx.term()


def _count(state) -> int:
    with sqlite3.connect(state / "state.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM signals").fetchone()[0]


def test_paper_publishes_and_resumed_session_continues_the_sequence(tmp_path):
    scenario = load_scenario("scenarios/default.toml").with_data(days=3)
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model = tmp_path / "model"
    train_model(prepared, registry, model)
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    signals = SignalsSettings(endpoint=endpoint, heartbeat_interval_s=0.2)
    state = tmp_path / "state"
    factory = paper_publisher(signals, state, strategy_config_kwargs(scenario, 1))
    collector = Collector(endpoint)
    try:
        # 80 bars at 1200x real time take ~4 s; the first run stops after ~1.5 s, the second resumes.
        for duration in (1.5, None):
            options = PaperOptions(speed=1200, bars=80, duration_s=duration, console=False)
            run_paper(scenario, registry, state, options, model_dir=model, extra_actors=[factory], prepared=prepared)
            if duration is not None:
                first_run_signals = _count(state)
            time.sleep(0.5)  # let the subscriber drain before the next run's publisher binds
    finally:
        collector.close()
    with sqlite3.connect(state / "state.sqlite") as db:
        stored = [row[0] for row in db.execute("SELECT ts FROM signals ORDER BY seq")]
    received = collector.messages
    assert len(stored) == 80
    assert 0 < first_run_signals < 80, "the first run must stop part-way for the resume to matter"
    assert [m["seq"] for m in received] == list(range(1, len(received) + 1)), "repeated or skipped seq"
    assert [m["ts_event"] for m in received] == stored, "every prediction published exactly once"
    assert {m["symbol"] for m in received} == {"BNBUSDT"}
    assert (state / "signals.seq").exists()
