"""A paper session given ``--duration`` or ``--bars`` stops on time, whatever the timing.

Regression tests for the hang of issue #18: nautilus' ``TradingNode.stop()`` forgot the stop task,
so a stop that raised (the status file written by the timer thread and by ``on_stop`` at the same
moment) left the engines running and ``node.run()`` idle for good; a stop landing while the node was
still starting waited for the connection timeout or started the trader after the stop.
Everything runs the real node; the random delays come from a real (slow) actor and the stop moment.
"""

import os
import random
import threading
import time

import pandas as pd
import pytest
from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig

from lbml.engine.messages import PREDICTION_TYPE
from lbml.live.feeds import FeedPlan
from lbml.live.session import PaperOptions, run_paper
from lbml.live.state import StateError
from lbml.live.status import PaperStatus, StatusActor, StatusActorConfig
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model

from .conftest import without_edge_gate
from .paper_support import state_rows

BARS = 60
# `LBML_STOP_RUNS=300 pytest tests/test_paper_stop.py` for the long stress run.
RUNS = int(os.environ.get("LBML_STOP_RUNS", "12"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop")
    scenario = without_edge_gate(load_scenario("scenarios/default.toml").with_data(days=4, edge=0.3))
    registry = load_registry()
    prepared = prepare(scenario, registry)
    train_model(prepared, registry, root / "model")
    return {"scenario": scenario, "registry": registry, "prepared": prepared, "model": root / "model"}


class SlowActorConfig(ActorConfig, frozen=True):
    seed: int = 0
    fail_on_stop: bool = False


class SlowActor(Actor):
    """A third-party actor that takes a random while to start and to handle predictions (a slow
    model or plugin on a loaded machine), and optionally fails when stopped."""

    def __init__(self, config: SlowActorConfig) -> None:
        super().__init__(config)
        self._rng = random.Random(config.seed)

    def on_start(self) -> None:
        time.sleep(self._rng.choice([0.0, 0.0, 0.01, 0.05, 0.2]))
        self.subscribe_data(PREDICTION_TYPE)

    def on_data(self, data) -> None:
        if self._rng.random() < 0.3:
            time.sleep(self._rng.choice([0.001, 0.01, 0.05]))

    def on_stop(self) -> None:
        if self.config.fail_on_stop:
            raise OSError("disk full")


def _run(setup, state, options: PaperOptions, actor: SlowActorConfig | None = None) -> dict:
    extra = [] if actor is None else [lambda status: SlowActor(actor)]
    return run_paper(setup["scenario"], setup["registry"], state, options, model_dir=setup["model"],
                     prepared=setup["prepared"], extra_actors=extra)


@pytest.mark.timeout(900)
def test_a_duration_stops_the_session_on_time_at_any_moment(setup, tmp_path):
    """Stops drawn from 'before the node has started' to 'mid-feed', with slow components: every
    session returns, stopped by its duration (or by the end of its bars), with a checkpoint that
    counts exactly what it stored. A stop that is lost hangs the session: the test's timeout fails
    it (no wall-clock bound here: a loaded machine spends seconds starting a node)."""
    rng = random.Random(18)
    for i in range(RUNS):
        duration = rng.choice([1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5, 1.0, 1.5])
        speed = rng.choice([600.0, 2000.0, 6000.0])
        state = tmp_path / f"s{i}"
        summary = _run(setup, state, PaperOptions(speed=speed, bars=BARS, duration_s=duration, console=False),
                       SlowActorConfig(component_id="SlowActor", seed=i))
        # the duration may also come first just as the last bar is served
        expected = ("feed ended", "duration") if summary["feed_finished"] else ("duration",)
        assert summary["stop_reason"] in expected, (i, duration, summary["stop_reason"])
        stored = state_rows(state, "SELECT COUNT(*) FROM equity")[0][0]
        assert stored == summary["bars"] <= BARS


@pytest.mark.timeout(300)
def test_a_stop_during_start_up_is_kept_and_the_session_resumes(setup, tmp_path):
    state = tmp_path / "early"
    first = _run(setup, state, PaperOptions(speed=1e9, bars=BARS, duration_s=1e-4, console=False))
    assert first["stop_reason"] == "duration" and not first["feed_finished"]
    final = _run(setup, state, PaperOptions(speed=1e9, bars=BARS, console=False))
    assert final["feed_finished"] and final["bars"] == BARS


@pytest.mark.timeout(300)
def test_a_component_failing_on_stop_cannot_hang_the_session(setup, tmp_path):
    """The stop goes on past the failure (engines stopped, other components stopped) and the session
    reports it in one line; what was committed resumes."""
    state = tmp_path / "failing"
    with pytest.raises(StateError, match="stopping the node failed: OSError"):
        _run(setup, state, PaperOptions(speed=1e9, bars=BARS, console=False),
             SlowActorConfig(component_id="SlowActor", fail_on_stop=True))
    final = _run(setup, state, PaperOptions(speed=1e9, bars=BARS, console=False))
    assert final["recovery_complete"] and final["bars"] == BARS


@pytest.mark.timeout(120)
def test_the_status_file_survives_the_timer_thread_and_on_stop_writing_at_once(tmp_path):
    """nautilus runs timer callbacks on its own thread: ``_tick`` and ``on_stop`` write concurrently."""
    actor = StatusActor(StatusActorConfig(component_id="StatusActor", console=False), PaperStatus(),
                        FeedPlan(sources=[]), tmp_path)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(3000):
                actor._write()
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_status_json_names_its_writer_and_when_it_wrote(tmp_path):
    # After a kill -9, status.json said "live" with nothing to tell a dead session from a live one.
    import json
    import os
    import time

    from lbml.live.status import PaperStatus

    before = time.time()
    status = json.loads(PaperStatus(state="live").to_json())
    assert status["state"] == "live" and status["pid"] == os.getpid()
    assert before <= status["heartbeat"] <= time.time()


# -- the stop paths of NodeRunner alone, hundreds of times -------------------------------------------
#
# The sessions above cost a trained model and a replay each; the race lives in ``NodeRunner`` and
# nautilus' kernel, so it is also driven here on bare nodes: an actor that starts slowly, fails (or
# not) when stopped and runs a clock timer (callbacks on nautilus' timer thread, as the status
# actor's), stopped from another thread, from the timer callback, by the duration or before the
# run starts, each at a random moment. A lost stop hangs the run: the test's timeout fails it.

NODE_RUNS = int(os.environ.get("LBML_NODE_STOP_RUNS", "300"))


class RaceActorConfig(ActorConfig, frozen=True):
    start_sleep_s: float = 0.0
    timer_ms: int = 0  # 0: no timer
    fail_on_stop: bool = False


class RaceActor(Actor):
    def __init__(self, config: RaceActorConfig, on_timer) -> None:
        super().__init__(config)
        self.on_timer = on_timer
        self.started = 0
        self.stopped = 0
        self.ticks = 0

    def on_start(self) -> None:
        self.started += 1
        time.sleep(self.config.start_sleep_s)
        if self.config.timer_ms:
            self.clock.set_timer("race", pd.Timedelta(milliseconds=self.config.timer_ms), callback=self._tick)

    def _tick(self, event) -> None:
        self.ticks += 1
        self.on_timer()

    def on_stop(self) -> None:
        self.stopped += 1
        if self.config.fail_on_stop:
            raise OSError("disk full")


def _bare_node(i: int):
    import asyncio

    from nautilus_trader.config import LoggingConfig, TradingNodeConfig
    from nautilus_trader.live.node import TradingNode

    # The paper node's timeouts (lbml.live.node), without its post-stop wait (nothing to drain here).
    config = TradingNodeConfig(trader_id=f"RACE-{i:03d}", logging=LoggingConfig(log_level="ERROR"),
                               timeout_connection=10.0, timeout_reconciliation=1.0, timeout_portfolio=1.0,
                               timeout_disconnection=2.0, timeout_post_stop=0.0)
    return TradingNode(config=config, loop=asyncio.new_event_loop())


@pytest.mark.timeout(600)
def test_node_runner_stops_whatever_the_moment_and_path_hundreds_of_times():
    from lbml.live.runner import NodeRunner

    rng = random.Random(1818)
    paths = {"thread": 0, "timer": 0, "duration": 0, "before_run": 0}
    for i in range(NODE_RUNS):
        path = rng.choice(sorted(paths))
        delay = rng.choice([0.0, 1e-4, 1e-3, 0.005, 0.02, 0.05])
        fail = rng.random() < 0.3
        node = _bare_node(i)
        runner = NodeRunner(node, grace_s=5.0)
        timer_ms = rng.choice([1, 2, 5]) if path == "timer" or rng.random() < 0.5 else 0
        actor = RaceActor(
            RaceActorConfig(component_id="RaceActor", start_sleep_s=rng.choice([0.0, 0.0, 0.001, 0.01, 0.03]),
                            timer_ms=timer_ms, fail_on_stop=fail),
            on_timer=(lambda r=runner: r.request_stop("timer")) if path == "timer" else (lambda: None),
        )
        node.trader.add_actor(actor)
        node.build()
        stopper = None
        if path == "thread":
            stopper = threading.Timer(delay, runner.request_stop, args=("thread",))
            stopper.start()
        elif path == "before_run":
            runner.request_stop("before_run")
        try:
            runner.run(duration_s=delay + 1e-4 if path == "duration" else None)
        finally:
            if stopper is not None:
                stopper.join()
            node.dispose()
        paths[path] += 1
        where = f"run {i} ({path}, delay {delay}, fail {fail}): "
        assert runner.stop_reason == path, where + str(runner.stop_reason)
        kernel = node.kernel
        engines = (kernel.data_engine, kernel.risk_engine, kernel.exec_engine)
        assert not any(e.is_running for e in engines), where + "an engine is still running"
        assert not actor.is_running, where + "the actor is still running"
        # Every actor that started was stopped exactly once; a failing stop is reported, not lost.
        assert actor.stopped == actor.started <= 1, where + f"started {actor.started}, stopped {actor.stopped}"
        stop_failed = any("disk full" in e for e in runner.errors)
        assert stop_failed == (fail and actor.started == 1), where + str(runner.errors)
        assert all("disk full" in e for e in runner.errors), where + str(runner.errors)
    assert min(paths.values()) > NODE_RUNS // 8, paths
