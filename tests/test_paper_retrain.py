"""``[paper.retrain]``: a real paper session retrains its model in a separate process, gates the
candidate, swaps it in between bars, records the swap, replays to it after a restart, and a
``kill -9`` during a retrain leaves the old model trading and loses nothing.
"""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.errors import ConfigError
from lbml.features.pipeline import compute_features
from lbml.live.retrain import RetrainPolicy, check_retrain
from lbml.live.session import PaperOptions, run_paper
from lbml.models.artifact import load_artifact
from lbml.research.training import scenario_pipeline, window_inputs
from lbml.plugins import load_registry
from lbml.scenario import RetrainConfig, load_scenario, parse_scenario
from lbml.split import Split
from lbml.workflows.prepare import prepare, train_model
from strategies.kelly_leverage import KellyLeverage

from .paper_support import bars_done, run_cli
from .paper_support import state_rows as _rows

BARS = 240
FILL_COLS = ("pos", "ts", "side", "quantity", "price", "commission", "liquidity", "order_type")
SPEED = 150.0  # 240 bars in ~100 s of feed: time for a small retrain to finish on a loaded machine
WINDOW = 2000  # bars: the features' 1440-bar warm-up plus ~560 trainable bars
RETRAIN = {"every_days": 0.01, "window_bars": WINDOW, "min_bars_between": 30}  # first trigger ~15 bars in


def _scenario(retrain: dict | None):
    """The paper tests' 4-day market (planted edge, session 374 bars after training) with a small model
    (no calibration block: on ~600 samples it maps the model to the base rate) and the gate off."""
    raw = load_scenario("scenarios/default.toml").with_data(days=4, edge=0.3).to_dict()
    raw["split"]["embargo_bars"] = 374
    raw["gate"]["enabled"] = False
    raw["validation"]["calibration"] = "none"
    raw["model"]["params"].update(n_estimators=60, min_child_weight=5.0)
    if retrain is not None:
        raw["paper"] = {"retrain": retrain}
    return parse_scenario(raw)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    scenario = _scenario(RETRAIN)
    scenario_file = root / "retrain.toml"
    scenario_file.write_text(scenario.to_toml())
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model = root / "model"
    train_model(prepared, registry, model)
    # the same session without retraining: what the old model trades
    reference = root / "reference"
    plain = _scenario(None)
    run_paper(plain, registry, reference, PaperOptions(speed=1e9, bars=BARS, console=False), model_dir=model,
              prepared=prepare(plain, registry))
    return {"root": root, "scenario": scenario, "file": scenario_file, "registry": registry, "prepared": prepared,
            "model": model, "reference": reference}


def test_retrain_config_is_strict_and_the_policy_is_a_function_of_the_bars():
    base = load_scenario("scenarios/default.toml").to_dict()
    for bad, message in (({"every_days": 1.0}, "exactly one of window_bars and window_days"),
                         ({"window_bars": 2000}, "nothing would trigger"),
                         ({"on_drift": True, "window_bars": 2000, "window": 3}, "paper.retrain.window: unknown key"),
                         ({"on_drift": True, "window_bars": 10}, "greater than or equal to 300")):
        with pytest.raises(ConfigError, match=message):
            parse_scenario(base | {"paper": {"retrain": bad}})

    minute = 60 * 10**9
    policy = RetrainPolicy(RetrainConfig(every_days=1 / 24, on_drift=True, window_bars=500, min_bars_between=10))
    t0 = 1_700_000_000 * 10**9
    assert policy.due(t0, 1, drift_flags=0) is None
    assert policy.due(t0 + 59 * minute, 60, drift_flags=0) is None
    assert policy.due(t0 + 60 * minute, 61, drift_flags=0) == "schedule"
    policy.triggered(t0 + 60 * minute, 61, drift_flags=0)
    assert policy.due(t0 + 65 * minute, 66, drift_flags=1) is None  # within min_bars_between
    assert policy.due(t0 + 71 * minute, 72, drift_flags=1) == "drift"  # a check flagged since the trigger
    policy.triggered(t0 + 71 * minute, 72, drift_flags=1)
    assert policy.due(t0 + 90 * minute, 91, drift_flags=1) is None  # no new flag: the same drift is not retrained twice
    index = pd.date_range("2024-01-01", periods=3000, freq="1min", tz="UTC")
    start, end = policy.window(index, index[2500].value)
    assert (start, end) == (index[2001], index[2500])  # the last 500 bars up to the trigger bar, none after
    days = RetrainPolicy(RetrainConfig(every_days=1.0, window_days=1.0))
    assert days.window(index, index[2500].value) == (index[1061], index[2500])  # bars closing in (end - 1 day, end]


def test_a_session_that_cannot_retrain_is_refused_up_front():
    scenario = _scenario(RETRAIN)
    with pytest.raises(ConfigError, match="needs --feed replay"):
        check_retrain(scenario, KellyLeverage, "zmq", 1440, 1)
    with pytest.raises(ConfigError, match="fewer than 300 bars after the features' warm-up"):
        check_retrain(scenario, KellyLeverage, "replay", 1800, 1)

    class NoReprice:
        trades_predictions = True

    with pytest.raises(ConfigError, match="has no reprice"):
        check_retrain(scenario, NoReprice, "replay", 1440, 1)


def _retrain_processes(state: Path) -> list[int]:
    """Pids of running retrain jobs of ``state`` (by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if b"lbml.live.retrain_job" in cmd and any(str(state).encode() in c for c in cmd) and ") Z" not in stat:
            pids.append(int(entry.name))
    return pids


def _retrains(state: Path) -> list[dict]:
    cols = ("i", "reason", "status", "trigger_pos", "trigger_bar", "trigger_ts", "window_start", "window_end", "candidate_id",
            "candidate_path", "old_model_id", "swap_pos", "swap_bar", "swap_ts", "gate", "error")
    return [dict(zip(cols, r)) for r in _rows(state, f"SELECT {', '.join(cols)} FROM retrains ORDER BY i")]


def _subscribe(endpoint: str, proc) -> list[dict]:
    """Signals the session publishes while ``proc`` runs (JSON payloads), collected on a thread."""
    import threading

    import zmq

    out: list[dict] = []
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"signal.")
    sock.setsockopt(zmq.RCVTIMEO, 200)
    sock.connect(endpoint)

    def receive() -> None:
        while proc.is_alive():
            try:
                _, payload = sock.recv_multipart()
            except zmq.Again:
                continue
            out.append(json.loads(payload))
        sock.close(0)

    threading.Thread(target=receive, daemon=True).start()
    return out


def _free_endpoint() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.timeout(900)
def test_kill_9_during_a_retrain_keeps_the_old_model_and_the_restart_swaps_at_a_recorded_bar(setup, tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lbml.cli", "lbml.live.session", "plugins.model_xgboost", "plugins.features_core"])
    state = tmp_path / "state"
    endpoint = _free_endpoint()
    argv = ["paper", str(setup["file"]), "--model", str(setup["model"]), "--state", str(state), "--speed", str(SPEED),
            "--bars", str(BARS), "--quiet", "--publish-endpoint", endpoint]
    out = tmp_path / "out.txt"
    old_id = load_artifact(setup["model"], setup["registry"]).model_id

    # 1. run until the first retrain's process is training, then kill -9 the session
    proc = ctx.Process(target=run_cli, args=(argv, str(out)))
    proc.start()
    deadline = time.monotonic() + 300
    while not _retrain_processes(state) and proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _retrain_processes(state), out.read_text()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    killed_at = bars_done(state)
    (row,) = _retrains(state)
    assert row["status"] == "running" and row["swap_pos"] is None and row["candidate_id"] is None
    # the training process ends itself with the session, leaving no half-written model
    deadline = time.monotonic() + 60
    while _retrain_processes(state) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _retrain_processes(state)
    assert not (state / "models" / "retrain-001" / "manifest.json").exists()
    status = json.loads((state / "status.json").read_text())
    assert status["model_id"] == old_id  # the old model was trading when the session died
    ref = setup["reference"]
    signals = "SELECT seq, ts, probability, close FROM signals ORDER BY seq"
    assert _rows(state, signals) == _rows(ref, signals)[: len(_rows(state, signals))]

    # 2. restart: the interrupted retrain runs again on the same window; the candidate goes in
    proc = ctx.Process(target=run_cli, args=(argv, str(out)))
    proc.start()
    published = _subscribe(endpoint, proc)
    proc.join(600)
    text = out.read_text()
    assert proc.exitcode == 0, text[-3000:]
    summary = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert 0 < summary["resumed_from"] and summary["bars"] == BARS and killed_at < BARS
    rows = _retrains(state)
    first = rows[0]
    assert (first["trigger_pos"], first["trigger_bar"], first["window_start"], first["window_end"]) == \
        (row["trigger_pos"], row["trigger_bar"], row["window_start"], row["window_end"])
    assert first["status"] == "accepted", first
    assert json.loads(first["gate"])["status"] == "disabled"
    assert first["old_model_id"] == old_id and first["candidate_id"] != old_id
    assert first["trigger_bar"] < first["swap_bar"] <= BARS

    # nothing lost or duplicated: one signal and one equity row per bar, numbered 1..BARS
    assert [r[0] for r in _rows(state, "SELECT seq FROM signals ORDER BY seq")] == list(range(1, BARS + 1))
    equity_ts = [r[0] for r in _rows(state, "SELECT ts FROM equity ORDER BY i")]
    assert len(equity_ts) == BARS and equity_ts == sorted(set(equity_ts))
    fills = f"SELECT {', '.join(FILL_COLS)} FROM fills WHERE ts <= {first['swap_ts']} ORDER BY i"
    assert _rows(state, fills) == _rows(setup["reference"], fills)  # the old model's fills, each once

    # before the swap: exactly the old model's session; from the swap bar on: the candidate, computed
    # as training computes features (from the window's start) and predicted by the saved artifact
    mine, theirs = _rows(state, signals), _rows(ref, signals)
    k = first["swap_bar"] - 1
    accepted = [r for r in rows if r["status"] == "accepted"]
    end = accepted[1]["swap_bar"] - 1 if len(accepted) > 1 else BARS  # until a second candidate goes in
    assert mine[:k] == theirs[:k]
    candidate = load_artifact(Path(first["candidate_path"]), setup["registry"])
    assert candidate.model_id == first["candidate_id"]
    scenario, market = setup["scenario"], setup["prepared"].market
    pipeline = scenario_pipeline(scenario, market, setup["registry"])
    pipeline.load_fitted_state(candidate.feature_state)
    last = pd.Timestamp(mine[end - 1][1], tz="UTC")
    inputs = window_inputs(scenario, market, Split(candidate.training_window.start, last, last, last))
    features = compute_features(pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding)
    after = pd.DatetimeIndex([pd.Timestamp(r[1], tz="UTC") for r in mine[k:end]])
    expected = candidate.model.predict_proba(features.loc[after].to_numpy())[:, list(candidate.model.classes_).index(1)]
    np.testing.assert_allclose([r[2] for r in mine[k:end]], expected, rtol=1e-12, atol=1e-12)
    assert [r[2] for r in mine[k:]] != [r[2] for r in theirs[k:]]
    assert candidate.training_window.end == pd.Timestamp(first["window_end"], tz="UTC")
    assert candidate.training_window.end < after[0]  # trained only on bars before it trades

    # the signal stream names the model that made each signal and sizes it with that model's rule
    models = {m["seq"]: m["model_id"] for m in published}
    assert any(seq < first["swap_bar"] for seq in models) and any(first["swap_bar"] <= seq < end for seq in models)
    assert all(mid == (old_id if seq < first["swap_bar"] else first["candidate_id"])
               for seq, mid in models.items() if seq < end)

    # the report and the status list the retrains
    from lbml.live.report import write_report

    _, metrics = write_report(state)
    assert [r["i"] for r in metrics["retrains"]] == [r["i"] for r in rows]
    assert metrics["model_id"] == old_id and metrics["model_id_final"] == accepted[-1]["candidate_id"]
    assert (state / "report" / "retrains.csv").is_file()
    status = json.loads((state / "status.json").read_text())
    assert status["retrain"]["accepted"] == len(accepted) and status["model_id"] == accepted[-1]["candidate_id"]

    # 3. a restart of the finished session replays through the recorded swap and adds nothing
    before = {t: _rows(state, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("fills", "signals", "equity", "trades")}
    summary = run_paper(scenario, setup["registry"], state, PaperOptions(speed=1e9, bars=BARS, console=False),
                        model_dir=setup["model"], prepared=setup["prepared"])
    assert summary["resumed_from"] == summary["items"] and summary["recovery_complete"]
    assert {t: _rows(state, f"SELECT COUNT(*) FROM {t}")[0][0] for t in before} == before
    assert _rows(state, signals) == mine


@pytest.mark.timeout(600)
def test_a_candidate_that_fails_the_edge_gate_is_recorded_and_not_traded(setup, tmp_path):
    """A retrain (schedule, or drift) whose candidate the gate rejects (100000 out-of-fold trades
    needed): the verdict is recorded with the candidate and the session trades the old model throughout."""
    from lbml.live.drift import DriftConfig

    raw = setup["scenario"].to_dict()
    raw["gate"] = {"enabled": True, "min_trades": 100_000}
    raw["paper"] = {"retrain": RETRAIN | {"on_drift": True}}
    scenario = parse_scenario(raw)
    state = tmp_path / "state"
    # alpha = 0.99 and features tested from one effective draw: drift checks flag early in a short session
    options = PaperOptions(speed=SPEED, bars=BARS, console=False, ignore_edge_gate=True,
                           drift=DriftConfig(every_bars=20, window=60, alpha=0.99, min_effective=1.0))
    summary = run_paper(scenario, setup["registry"], state, options, model_dir=setup["model"],
                        prepared=setup["prepared"])
    assert summary["bars"] == BARS
    rows = _retrains(state)
    first = rows[0]
    assert first["reason"] == "schedule" and first["status"] == "rejected", first
    # a drift retrain only ever follows a check that flagged after the previous trigger
    for before, row in zip(rows, rows[1:]):
        if row["reason"] == "drift":
            assert _rows(state, f"SELECT COUNT(*) FROM drift WHERE flagged = 1 AND ts > {before['trigger_ts']} "
                                f"AND ts <= {row['trigger_ts']}")[0][0] > 0
    gate = json.loads(first["gate"])
    assert gate["status"] == "closed" and "at least 100000 needed" in gate["reason"]
    assert first["candidate_id"] and first["swap_pos"] is None and first["swap_bar"] is None
    assert load_artifact(Path(first["candidate_path"]), setup["registry"]).model_id == first["candidate_id"]
    assert all(r["status"] != "accepted" for r in rows)
    old_id = load_artifact(setup["model"], setup["registry"]).model_id
    assert json.loads((state / "status.json").read_text())["model_id"] == old_id
    ref = setup["reference"]
    for sql in ("SELECT seq, ts, probability, close FROM signals ORDER BY seq",
                f"SELECT {', '.join(FILL_COLS)} FROM fills ORDER BY i"):
        assert _rows(state, sql) == _rows(ref, sql)
