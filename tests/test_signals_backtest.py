"""`lbml backtest --publish`: the real engine's predictions reach a subscriber over ZeroMQ."""

import pandas as pd
import pytest

from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.settings import SignalsSettings
from lbml.workflows.run import run_scenario

from .conftest import without_calibration
from .signals_support import Subscriber, free_port

# Each test waits on a node, a socket or a subprocess: it fails after 180 s instead of hanging.
pytestmark = pytest.mark.timeout(180)


def test_backtest_publishes_each_prediction_with_consecutive_sequence_numbers(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = Subscriber(endpoint)  # connects first; ZeroMQ reconnects until the publisher binds
    settings = SignalsSettings(endpoint=endpoint, seq_store=tmp_path / "seq", heartbeat_interval_s=0.1)
    scenario = without_calibration(load_scenario("scenarios/default.toml").with_data(days=2))
    # ~200 training rows on 2 days: leaves of 50 samples would leave the trees unsplit, a constant model
    params = {**scenario.model.params, "min_child_weight": 1.0}
    scenario = scenario.model_copy(update={"model": scenario.model.model_copy(update={"params": params})})
    try:
        run_dir, metrics = run_scenario(scenario, load_registry(), tmp_path / "runs", publish=settings)
        stats = metrics["signals"]
        sub.wait(lambda: any(h["last_seq"] == stats["last_seq"] for h in sub.heartbeats()), "final heartbeat")
    finally:
        sub.close()
    predictions = pd.read_csv(run_dir / "predictions.csv", parse_dates=["ts"])
    # Fewer predictions than the send high-water mark: nothing can have been dropped.
    assert stats["published"] == metrics["n_predictions"] == len(predictions) == stats["last_seq"] > 100
    assert stats["dropped"] == 0
    received = sub.signals()
    seqs = [m["seq"] for m in received]
    assert seqs and seqs == list(range(seqs[0], stats["last_seq"] + 1))
    by_ts = dict(zip(predictions["ts"].astype("int64"), predictions["probability_up"]))
    for m in received:
        assert m["probability"] == pytest.approx(by_ts[m["ts_event"]], rel=1e-12)  # csv rounds the last digit
        assert m["symbol"] == scenario.data.symbol and m["model_id"] == metrics["model_id"]
        assert m["horizon"] == scenario.labels.horizon_bars * 60
    assert {m["direction"] for m in received} <= {"long", "short", "flat"}
