"""Paper trading publishes every new prediction over ZeroMQ exactly once, also across a restart."""

import json
import socket
import sqlite3
import threading
import time

import pytest
import zmq

from lbml.live.publishing import paper_publisher
from lbml.live.session import PaperOptions, run_paper
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.settings import SignalsSettings
from lbml.signals.publisher import HEARTBEAT_TOPIC
from lbml.workflows.prepare import prepare, train_model

from .conftest import without_calibration, without_edge_gate

# Each test waits on a node, a socket or a subprocess: it fails after 300 s instead of hanging.
pytestmark = pytest.mark.timeout(300)


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


KILLS = 10


@pytest.mark.timeout(600)
def test_sigkill_between_send_and_commit_republishes_with_the_same_seq(tmp_path):
    """Kill a real `lbml paper` process (SIGKILL) at random points, KILLS times, with a subscriber on the
    wire throughout. A prediction sent but not committed when the process died is sent again after
    the restart: with the same seq and payload, so every bar's signal has exactly one seq, the wire
    agrees with the state database, and a subscriber that drops seen seqs sees each signal once."""
    import multiprocessing
    import os
    import random
    import signal

    from .paper_support import bars_done, run_cli

    bars = 300
    scenario = without_edge_gate(without_calibration(load_scenario("scenarios/default.toml").with_data(days=3)))
    registry = load_registry()
    train_model(prepare(scenario, registry), registry, tmp_path / "model")
    scenario_file = tmp_path / "three_days.toml"
    scenario_file.write_text(scenario.to_toml())
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    state = tmp_path / "state"
    argv = ["paper", str(scenario_file), "--model", str(tmp_path / "model"), "--state", str(state),
            "--speed", "1e9", "--bars", str(bars), "--quiet", "--publish-endpoint", endpoint]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lbml.cli", "lbml.live.session", "plugins.model_xgboost", "plugins.features_core"])
    collector = Collector(endpoint)
    rng = random.Random(18)
    kills = 0
    try:
        while True:
            proc = ctx.Process(target=run_cli, args=(argv, str(tmp_path / "out.txt")))
            proc.start()
            # Half the kills follow a signal's arrival at once (sent, probably not yet committed),
            # half land at random moments (between bars, mid-fill, mid-commit).
            target = len(collector.messages) + rng.randint(5, 25)
            while proc.is_alive() and len(collector.messages) < target:
                time.sleep(0.0005)
            if proc.is_alive() and kills < KILLS:
                if kills % 2:
                    time.sleep(rng.random() * 0.03)
                os.kill(proc.pid, signal.SIGKILL)
                proc.join()
                kills += 1
                continue
            proc.join(300)
            assert proc.exitcode == 0, (tmp_path / "out.txt").read_text()[-2000:]
            break
        time.sleep(0.5)
    finally:
        collector.close()
    assert kills == KILLS
    with sqlite3.connect(state / "state.sqlite") as db:
        stored = {seq: (ts, p) for seq, ts, p in db.execute("SELECT seq, ts, probability FROM signals")}
    assert sorted(stored) == list(range(1, bars + 1))
    by_seq: dict[int, set] = {}
    seqs_of_bar: dict[int, set] = {}
    for m in collector.messages:
        by_seq.setdefault(m["seq"], set()).add((m["ts_event"], m["probability"], m["direction"], m["stop_loss"]))
        seqs_of_bar.setdefault(m["ts_event"], set()).add(m["seq"])
    assert len(by_seq) > bars // 2, "the subscriber saw too little to judge"
    assert all(len(payloads) == 1 for payloads in by_seq.values()), "one seq, two different payloads"
    assert all(len(seqs) == 1 for seqs in seqs_of_bar.values()), \
        f"bars sent under two seqs: {[sorted(s) for s in seqs_of_bar.values() if len(s) > 1]}"
    for seq, payloads in by_seq.items():  # the wire agrees with the state database
        (ts, probability, _, _), = payloads
        assert stored[seq] == (ts, probability), seq
    seen, deduplicated = set(), []
    for m in collector.messages:
        if m["seq"] not in seen:
            seen.add(m["seq"])
            deduplicated.append(m["seq"])
    assert deduplicated == sorted(deduplicated), "a deduplicating subscriber sees the signals in order"
