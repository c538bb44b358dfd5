"""Paper trading publishes every new prediction over ZeroMQ exactly once, also across a restart."""

import json
import socket
import sqlite3
import threading
import time

import zmq

from lbml.live.publishing import paper_publisher
from lbml.live.session import PaperOptions, run_paper
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.settings import SignalsSettings
from lbml.signals.publisher import HEARTBEAT_TOPIC
from lbml.workflows import prepare, train_model

from .conftest import without_calibration, without_edge_gate


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
        self._sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
        self.connected = threading.Event()  # set by the first heartbeat: the subscription is live
        self._sock.setsockopt(zmq.RCVTIMEO, 100)
        self._sock.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                topic, payload = self._sock.recv_multipart()
            except zmq.Again:
                continue
            if topic == HEARTBEAT_TOPIC.encode():
                self.connected.set()
            else:
                self.messages.append(json.loads(payload))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close(0)
        self._ctx.term()


def test_paper_publishes_each_prediction_once_across_a_restart(tmp_path):
    scenario = without_edge_gate(without_calibration(load_scenario("scenarios/default.toml").with_data(days=3)))
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model = tmp_path / "model"
    train_model(prepared, registry, model)
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    signals = SignalsSettings(endpoint=endpoint, heartbeat_interval_s=0.2)
    state = tmp_path / "state"
    make_publisher = paper_publisher(signals, state, scenario)
    collector = Collector(endpoint)

    def factory(status):
        # The publisher binds when the node is built; a subscriber joins a moment later (ZeroMQ's
        # slow joiner), so the session starts only once the collector receives a heartbeat.
        actor = make_publisher(status)
        assert collector.connected.wait(30.0), "the collector never received a heartbeat"
        return actor

    try:
        options = PaperOptions(speed=1e9, bars=60, console=False)
        run_paper(scenario, registry, state, options, model_dir=model, extra_actors=[factory], prepared=prepared)
        time.sleep(0.5)
        first = list(collector.messages)
        # Restarting the finished session replays it: nothing already published is sent again.
        collector.connected.clear()  # wait for the restarted publisher too
        run_paper(scenario, registry, state, options, model_dir=model, extra_actors=[factory], prepared=prepared)
        time.sleep(0.5)
    finally:
        collector.close()
    with sqlite3.connect(state / "state.sqlite") as db:
        stored = [row[0] for row in db.execute("SELECT ts FROM signals ORDER BY seq")]
    assert len(stored) == 60
    # A SUB socket may miss the first messages while its subscription propagates (ZeroMQ's slow
    # joiner); from there on nothing may be missing, repeated or out of order.
    seqs = [m["seq"] for m in first]
    assert seqs and seqs == list(range(seqs[0], 61)), "repeated or skipped seq"
    assert [m["ts_event"] for m in first] == stored[seqs[0] - 1:], "every prediction published exactly once"
    assert collector.messages == first, "the restart re-published replayed predictions"
    assert {m["symbol"] for m in first} == {"BNBUSDT"}
    assert (state / "signals.seq").exists()
