"""``[paper.retrain]``: a real paper session retrains its model in a separate process, gates the
candidate, swaps it in between bars, records the swap, replays to it after a restart, and a
``kill -9`` during a retrain leaves the old model trading and loses nothing.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace
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
from .watch_support import ROOT
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
    check_retrain(scenario, KellyLeverage, 1440, 1)  # on every feed (live ones train on the bars they kept)
    with pytest.raises(ConfigError, match="fewer than 300 bars after the features' warm-up"):
        check_retrain(scenario, KellyLeverage, 1800, 1)

    class NoReprice:
        trades_predictions = True

    with pytest.raises(ConfigError, match="has no reprice"):
        check_retrain(scenario, NoReprice, 1440, 1)


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


@pytest.mark.timeout(900)
def test_a_zmq_session_retrains_on_the_bars_it_kept_and_a_kill_9_loses_none_of_them(setup, tmp_path):
    """``lbml paper --feed zmq`` fed by a real publisher on loopback: the live events and the bars the
    session built are its only copy of the market after the paper window's start. The retrain reads its
    window from them; a kill -9 while it trains loses none (the restart trains on the same window), and
    after the swap the signals are the candidate's predictions, computed here from the scenario's data."""
    from .watch_support import ControlledFeed, events_through_bar, free_port, session_events, start_paper, wait_for

    scenario, prepared, registry = setup["scenario"], setup["prepared"], setup["registry"]
    symbol, bar_ns = scenario.data.symbol, prepared.market.bar_minutes * 60_000_000_000
    events = session_events(scenario, registry, prepared)
    state = tmp_path / "state"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    feed = ControlledFeed(endpoint)
    old_id = load_artifact(setup["model"], registry).model_id
    total = 120
    proc = start_paper(setup["file"], setup["model"], state, endpoint, tmp_path / "paper1.log")
    try:
        # 1. 40 bars; the retrain triggers ~15 bars in; kill -9 while its process trains
        feed.wait_subscriber(120)
        feed.send(events[: events_through_bar(events, symbol, bar_ns, 40)])
        wait_for(lambda: _retrain_processes(state) or proc.poll() is not None, 300, "the retrain process")
        assert proc.poll() is None, (tmp_path / "paper1.log").read_text()[-2000:]
        proc.kill()
        proc.wait()
        killed_at = bars_done(state)
        (row,) = _retrains(state)
        assert row["status"] == "running" and row["reason"] == "schedule" and row["trigger_bar"] <= killed_at
        # what the session kept: every bar it built equals the scenario's bar (the feed built them
        # from the same trades), and the journal holds the events it was sent, in order
        kept = _rows(state, "SELECT symbol, ts, open, high, low, close, volume, taker_buy_volume FROM bars ORDER BY i")
        assert len(kept) >= 30 and {r[0] for r in kept} <= set(prepared.market.instruments)
        for sym in {r[0] for r in kept}:
            mine = np.array([r[2:] for r in kept if r[0] == sym])
            index = pd.to_datetime([r[1] for r in kept if r[0] == sym], utc=True)
            want = prepared.market[sym].bars.loc[index, ["open", "high", "low", "close", "volume", "taker_buy_volume"]]
            np.testing.assert_allclose(mine, want.to_numpy(), rtol=1e-12)
        journaled = _rows(state, "SELECT kind, symbol, ts, a, b FROM journal ORDER BY pos")
        assert journaled == [(e.kind, e.symbol, e.ts, e.a, e.b) for e in events[: len(journaled)]]
        wait_for(lambda: not _retrain_processes(state), 60, "the orphaned retrain process to end itself")

        # 2. restart: the interrupted retrain trains again on the same window, read from the state
        # database (the scenario's data after the paper window's start is never read by the session)
        proc = start_paper(setup["file"], setup["model"], state, endpoint, tmp_path / "paper2.log")
        feed.wait_subscriber(120)
        manifest = state / "models" / "retrain-001" / "manifest.json"
        wait_for(lambda: (manifest.exists() and not _retrain_processes(state)) or proc.poll() is not None, 600,
                 "the relaunched retrain to finish")
        assert proc.poll() is None, (tmp_path / "paper2.log").read_text()[-2000:]
        job_bars = pd.read_parquet(state / "retrains" / "001" / "data" / f"bars.{symbol}.parquet")
        window = prepared.market[symbol].bars.loc[job_bars.index[0]: job_bars.index[-1]]
        assert job_bars.index.equals(window.index) and job_bars.index[-1].value == row["window_end"]
        assert job_bars.index[-1] > prepared.split.test_start  # the window reaches into the kept bars
        np.testing.assert_allclose(job_bars[window.columns].to_numpy(), window.to_numpy(), rtol=1e-12)
        for kind in ("trades", "quotes"):  # the window's ticks: history, then the journal's, as the scenario has them
            job_ticks = pd.read_parquet(state / "retrains" / "001" / "data" / f"{kind}.{symbol}.parquet")
            frame = getattr(prepared.market[symbol], kind)
            pd.testing.assert_frame_equal(job_ticks, frame.loc[job_ticks.index[0]: job_ticks.index[-1]], check_freq=False)
            assert job_ticks.index[-1] > prepared.split.test_start
        feed.send(events[len(journaled): events_through_bar(events, symbol, bar_ns, total)])
        feed.end()
        assert proc.wait(timeout=300) == 0, (tmp_path / "paper2.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feed.close()

    rows = _retrains(state)
    first = rows[0]
    assert (first["trigger_pos"], first["window_start"], first["window_end"]) == \
        (row["trigger_pos"], row["window_start"], row["window_end"])
    assert first["status"] == "accepted", first
    assert first["old_model_id"] == old_id and first["candidate_id"] != old_id
    signals = "SELECT seq, ts, probability, close FROM signals ORDER BY seq"
    mine = _rows(state, signals)
    # one signal per bar, each once: the 120 bars sent, and the one the end of the stream closed
    assert [r[0] for r in mine] == list(range(1, total + 2))
    k = first["swap_bar"] - 1
    assert killed_at < k < total  # decided on a bar the restart committed, after the relaunched job ended
    accepted = [r for r in rows if r["status"] == "accepted"]
    end = accepted[1]["swap_bar"] - 1 if len(accepted) > 1 else len(mine)
    # before the swap: the replay session of the old model, signal for signal (same events, same bars)
    theirs = _rows(setup["reference"], signals)
    assert mine[:k] == theirs[:k]
    assert [r[2] for r in mine[k:end]] != [r[2] for r in theirs[k:end]]  # the candidate trades from the swap bar
    candidate = load_artifact(Path(first["candidate_path"]), registry)
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    pipeline.load_fitted_state(candidate.feature_state)
    last = pd.Timestamp(mine[end - 1][1], tz="UTC")
    inputs = window_inputs(scenario, prepared.market, Split(candidate.training_window.start, last, last, last))
    features = compute_features(pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding)
    after = pd.DatetimeIndex([pd.Timestamp(r[1], tz="UTC") for r in mine[k:end]])
    expected = candidate.model.predict_proba(features.loc[after].to_numpy())[:, list(candidate.model.classes_).index(1)]
    np.testing.assert_allclose([r[2] for r in mine[k:end]], expected, rtol=1e-12, atol=1e-12)
    assert candidate.training_window.end < after[0]

    # the retrains as the dashboard (in a real headless Chromium) and `lbml report` show them: the state database's rows
    _check_dashboard_retrains(state, tmp_path)
    report = subprocess.run([sys.executable, "-m", "lbml", "report", str(state)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert report.returncode == 0, report.stderr[-2000:]
    listed = [ln.strip() for ln in report.stdout.splitlines() if ln.strip().startswith("retrain ")]
    assert len(listed) == len(rows)
    when = pd.Timestamp(first["trigger_ts"], tz="UTC").strftime("%Y-%m-%d %H:%M")
    gate = json.loads(first["gate"])
    assert gate["status"] == "disabled"
    assert listed[0] == (f"retrain 1 (schedule, bar {first['trigger_bar']}, {when}): accepted, gate disabled "
                         f"({gate['reason']}), model {old_id} -> {first['candidate_id']}, trades from bar {first['swap_bar']}")


def test_a_swap_prepared_off_the_bar_loop_and_caught_up_equals_one_prepared_at_the_swap_bar(setup):
    """The job's thread replays the candidate's pipeline up to the last committed bar, the bar loop
    advances it over the bars since (``catch_up``): the same pipeline state as one replay up to the
    swap bar, shown by the features both compute for the bars after it (exactly equal)."""
    from lbml.live.model_swap import catch_up, prepare_swap

    scenario, market, registry = setup["scenario"], setup["prepared"].market, setup["registry"]
    artifact = load_artifact(setup["model"], registry)
    index = market[scenario.data.symbol].bars.index
    after = index[index > setup["prepared"].split.test_start]
    t1, t2, t3 = after[10], after[17], after[40]
    whole = prepare_swap(artifact, scenario, market, registry, t2)
    parts = catch_up(prepare_swap(artifact, scenario, market, registry, t1), scenario, market, t2)
    assert parts.until == whole.until == t2
    np.testing.assert_array_equal(parts.reference, whole.reference)
    nothing = catch_up(parts, scenario, market, t1)  # a bar the swap has consumed already: nothing to do
    assert nothing is parts
    data = market[scenario.data.symbol]

    def between(frame):
        return frame.loc[(frame.index > t2) & (frame.index <= t3)] if frame is not None else None

    clipped = replace(data, trades=between(data.trades), quotes=between(data.quotes), depth=between(data.depth))
    ref = scenario.data.reference_symbol
    later = [compute_features(swap.pipeline, clipped, between(data.bars),
                              between(market[ref].bars) if ref in market.instruments else None,
                              between(market.funding.get(scenario.data.symbol)), reset=False).to_numpy()
             for swap in (whole, parts)]
    assert later[0].shape == (23, len(whole.pipeline.names)) and np.isfinite(later[0]).all()
    np.testing.assert_array_equal(later[1], later[0])


def _shifted(prepared, factor: float = 4.0):
    """``prepared`` with the traded symbol's market after the paper window's start made ``factor`` times as
    volatile (every price's distance from the last price before the window, in log terms) and as heavy
    (trade sizes); its bars rebuilt from the shifted trades as the loader builds them."""
    from dataclasses import replace

    from lbml.data.frames import MarketData, bars_from_trades

    market, start = prepared.market, prepared.split.test_start
    symbol = prepared.scenario.data.symbol
    inst = market[symbol]
    p0 = float(inst.trades.loc[:start, "price"].iloc[-1])

    def move(prices: pd.Series) -> np.ndarray:
        return np.round(p0 * (prices.to_numpy() / p0) ** factor, 2)

    trades, quotes = inst.trades.copy(), inst.quotes.copy()
    after, q_after = trades.index > start, quotes.index > start
    trades.loc[after, "price"] = move(trades.loc[after, "price"])
    trades.loc[after, "size"] = np.round(trades.loc[after, "size"].to_numpy() * factor, 3)
    bid, ask = move(quotes.loc[q_after, "bid"]), move(quotes.loc[q_after, "ask"])
    quotes.loc[q_after, "bid"], quotes.loc[q_after, "ask"] = bid, np.maximum(ask, bid + 0.01)
    bars = pd.concat([inst.bars.loc[:start], bars_from_trades(trades.loc[after], market.bar_minutes)])
    instruments = market.instruments | {symbol: replace(inst, trades=trades, quotes=quotes, bars=bars)}
    return replace(prepared, market=MarketData(instruments, market.funding, market.bar_minutes))


@pytest.mark.timeout(900)
def test_a_shifted_stream_makes_the_drift_monitor_flag_and_the_session_retrain_for_drift(setup, tmp_path):
    """Drift, not the schedule, triggers the retrain (``on_drift = true`` alone): on a stream four
    times as volatile as the training data the drift check flags and the session retrains on it; the
    same session on the unshifted stream, checked the same way, flags nothing and never retrains."""
    from lbml.live.drift import DriftConfig

    raw = setup["scenario"].to_dict()
    raw["paper"] = {"retrain": {"on_drift": True, "window_bars": WINDOW, "min_bars_between": 30}}
    scenario = parse_scenario(raw)
    drift = DriftConfig(every_bars=30, window=60)  # the default test: alpha 0.01 per check, Holm, effective draws
    shifted = _shifted(setup["prepared"])
    state = tmp_path / "shifted"
    summary = run_paper(scenario, setup["registry"], state, PaperOptions(speed=SPEED, bars=BARS, console=False,
                                                                          drift=drift),
                        model_dir=setup["model"], prepared=shifted)
    assert summary["bars"] == BARS
    rows = _retrains(state)
    assert rows and all(r["reason"] == "drift" for r in rows)
    first = rows[0]
    flagged = _rows(state, f"SELECT ts, n_drifted, n_features FROM drift WHERE flagged = 1 AND ts <= {first['trigger_ts']}")
    assert flagged, _rows(state, "SELECT ts, n_drifted, n_features, flagged FROM drift")
    assert json.loads(first["gate"])["status"] == "disabled" and first["status"] == "accepted"
    assert first["trigger_bar"] < first["swap_bar"]
    # the window ends at the trigger bar and holds the shifted bars the session traded
    assert pd.Timestamp(first["window_end"], tz="UTC") > setup["prepared"].split.test_start

    calm = tmp_path / "calm"
    summary = run_paper(scenario, setup["registry"], calm, PaperOptions(speed=1e9, bars=BARS, console=False,
                                                                         drift=drift),
                        model_dir=setup["model"], prepared=setup["prepared"])
    assert summary["bars"] == BARS
    checks = _rows(calm, "SELECT flagged FROM drift")
    assert len(checks) >= 5 and not any(f for (f,) in checks)
    assert _retrains(calm) == []


READ_RETRAINS = """(() => ({
  count: document.getElementById("retrain-count").textContent,
  rows: [...document.querySelectorAll("#retrains-table tbody tr")].map(
    (tr) => [...tr.children].map((td) => td.textContent)),
  triggers: document.querySelectorAll("#chart-equity line.retrain-trigger").length,
  swaps: document.querySelectorAll("#chart-equity line.retrain-swap").length,
  error: document.getElementById("error").textContent,
}))()"""


def _check_dashboard_retrains(state: Path, tmp_path: Path) -> None:
    """``lbml dashboard STATE_DIR`` in Chromium: the retrains table and the equity chart's markers equal
    the ``retrains`` rows read here from the state database (newest first)."""
    from .chromium_support import Chromium
    from .watch_support import free_port, wait_for

    want = []
    for i, trigger_ts, reason, status, old, new, gate, error, swap_bar in reversed(_rows(
            state, "SELECT i, trigger_ts, reason, status, old_model_id, candidate_id, gate, error, swap_bar "
                   "FROM retrains ORDER BY i")):
        verdict = json.loads(gate) if gate else None
        shown_gate = (verdict["status"] + (f": {verdict['reason']}" if verdict.get("reason") else "")) if verdict \
            else (f"error: {error}" if error else "-")
        want.append([str(i), pd.Timestamp(trigger_ts, tz="UTC").strftime("%Y-%m-%d %H:%M"), reason, status,
                     old or "-", new or "-", shown_gate, "-" if swap_bar is None else str(swap_bar)])
    port = free_port()
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "lbml", "dashboard", str(state), "--port", str(port), "--interval", "0.25"],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    browser = None
    try:
        assert dashboard.stdout.readline().strip().endswith(f"http://127.0.0.1:{port}/")
        browser = Chromium(tmp_path / "chromium")
        browser.open(f"http://127.0.0.1:{port}/")
        wait_for(lambda: browser.evaluate("document.getElementById('retrain-count').textContent") == str(len(want)),
                 60, "the page to show the retrains")
        page = browser.evaluate(READ_RETRAINS)
        assert page["error"] == ""
        assert page["rows"] == want
        assert page["triggers"] == len(want) and page["swaps"] == sum(r[3] == "accepted" for r in want)
        browser.screenshot(tmp_path / "retrains.png")
        assert (tmp_path / "retrains.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if browser is not None:
            browser.close()
        dashboard.terminate()
        dashboard.wait(timeout=30)
