"""Paper trading on a real nautilus TradingNode: backtest agreement, crash recovery, report.

Everything runs the real engine: the sandbox-based paper venue, the feed client, SQLite state, and
real ``lbml paper`` processes killed with SIGKILL.
"""

import dataclasses
import json
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest

from lbml.engine.backtest import run_backtest
from lbml.live.session import PaperOptions, run_paper
from lbml.live.state import StateError
from lbml.models.artifact import load_artifact
from lbml.research.training import scenario_pipeline
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model, warm_up

from .conftest import without_edge_gate
from .paper_support import bars_done, run_cli
from .paper_support import state_rows as _rows
from .report_support import assert_tearsheet_matches

# Each test waits on a node, a socket or a subprocess: it fails after 300 s instead of hanging.
pytestmark = pytest.mark.timeout(300)

BARS = 200
FILL_COLS = ("pos", "ts", "side", "quantity", "price", "commission", "liquidity", "order_type")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 4-day scenario file, its model, and one uninterrupted paper session of BARS bars.

    The default scenario (all feature plugins, funding and depth included) with a stronger planted
    edge, so the small model trades in BARS bars (brackets exercised), and an embargo that starts
    the session ten bars before a funding settlement (16:00 UTC), so the funding path is compared too.
    """
    root = tmp_path_factory.mktemp("paper")
    scenario = load_scenario("scenarios/default.toml").with_data(days=4, edge=0.3)
    scenario = scenario.model_copy(update={"split": scenario.split.model_copy(update={"embargo_bars": 374})})
    scenario = without_edge_gate(scenario)
    scenario_file = root / "four_days.toml"
    scenario_file.write_text(scenario.to_toml())
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model = root / "model"
    train_model(prepared, registry, model)
    state = root / "uninterrupted"
    summary = run_paper(scenario, registry, state, PaperOptions(speed=1e9, bars=BARS, console=False), model_dir=model)
    return {"root": root, "scenario": scenario, "file": scenario_file, "registry": registry,
            "prepared": prepared, "model": model, "state": state, "summary": summary}


def test_paper_agrees_with_the_backtest_bar_for_bar(setup):
    """Same data, model and costs: identical signals, fills, costs and equity on every common bar."""
    scenario, registry, prepared = setup["scenario"], setup["registry"], setup["prepared"]
    index = prepared.market[scenario.data.symbol].bars.index
    end = index[index > prepared.split.test_start][BARS - 1]
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    artifact = load_artifact(setup["model"], registry, pipeline.schema())
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    split = dataclasses.replace(prepared.split, test_end=end)
    bt = run_backtest(scenario, prepared.market, split, pipeline, artifact.model, ev_margin=artifact.ev_margin,
                     pricing=artifact.pricing)
    funding = prepared.market.funding[scenario.data.symbol].index
    assert ((funding > split.test_start) & (funding <= end)).sum() == 1  # a settlement is delivered to both
    assert {"funding", "depth"} <= {p.plugin for p in scenario.features.plugins}

    state = setup["state"]
    signals = _rows(state, "SELECT ts, probability FROM signals ORDER BY seq")
    assert len(signals) == BARS
    # The backtest emits a time bar when its clock passes the close; nothing follows the last one,
    # so it has one signal fewer. Every signal it has is identical.
    assert len(bt.predictions) == BARS - 1
    assert signals[: BARS - 1] == [tuple(p) for p in bt.predictions]

    from lbml.engine.recorder import FILL_COLUMNS

    columns = [c for c in FILL_COLUMNS if c != "order_id"]
    paper_fills = pd.DataFrame(_rows(state, f"SELECT {', '.join(columns)} FROM fills ORDER BY i"), columns=columns)
    paper_fills["liquidation"] = paper_fills["liquidation"].astype(bool)
    bt_fills = bt.record.fills_frame().drop(columns="order_id")
    types = set(bt_fills.order_type)
    assert len(bt_fills) > 5 and "MARKET" in types and types & {"LIMIT", "STOP_MARKET"}  # brackets exercised
    pd.testing.assert_frame_equal(paper_fills, bt_fills.reset_index(drop=True), check_exact=True)

    equity = _rows(state, "SELECT ts, equity, balance, close FROM equity ORDER BY i")
    assert equity[: BARS - 1] == [tuple(r) for r in bt.record.equity]
    last_borrow, last_slippage = _rows(state, "SELECT borrow, slippage FROM equity ORDER BY i DESC LIMIT 1")[0]
    assert last_borrow == bt.borrow.total and last_slippage == bt.slippage.total + bt.gap_slippage.total


def _free_endpoint() -> str:
    """A loopback endpoint for the session's signal publisher (the default port may be taken)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def test_sigkill_at_random_points_resumes_to_the_uninterrupted_state(setup, tmp_path):
    """Kill a real `lbml paper` process with SIGKILL 5 times; the final state equals the reference.

    Each run is its own OS process forked from a multiprocessing fork server that has lbml already
    imported (importing nautilus, sklearn and scipy costs seconds per process on a busy machine).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["lbml.cli", "lbml.live.session", "lbml.live.report", "plugins.model_xgboost",
                                "plugins.features_core", "plugins.data_sources"])
    state = tmp_path / "state"
    argv = ["paper", str(setup["file"]), "--model", str(setup["model"]), "--state", str(state),
            "--speed", "1e9", "--bars", str(BARS), "--quiet", "--publish-endpoint", _free_endpoint()]
    out = tmp_path / "out.txt"
    rng = random.Random(20261121)
    kills, final = [], None
    while final is None:
        proc = ctx.Process(target=run_cli, args=(argv, str(out)))
        proc.start()
        target = bars_done(state) + rng.randint(20, 35)
        while proc.is_alive() and bars_done(state) < target:
            time.sleep(0.02)
        if proc.is_alive() and len(kills) < 5:
            time.sleep(rng.random() * 0.05)  # land between bars, mid-fill or mid-commit
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            assert proc.exitcode == -signal.SIGKILL
            kills.append(bars_done(state))
            continue
        proc.join()
        text = out.read_text()
        assert proc.exitcode == 0, text[-2000:]
        final = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert len(kills) == 5 and kills == sorted(kills) and kills[-1] < BARS, kills
    assert final["resumed_from"] > 0

    ref = setup["state"]
    for sql in (f"SELECT {', '.join(FILL_COLS)} FROM fills ORDER BY i",
                "SELECT ts, equity, balance, close, borrow, slippage FROM equity ORDER BY i",
                "SELECT seq, ts, probability, close FROM signals ORDER BY seq",
                "SELECT opened, closed, side, quantity, entry_price, exit_price, realized_pnl FROM trades ORDER BY i"):
        assert _rows(state, sql) == _rows(ref, sql), sql
    # No lost, duplicated or renumbered signals: 1..BARS exactly once.
    assert [r[0] for r in _rows(state, "SELECT seq FROM signals ORDER BY seq")] == list(range(1, BARS + 1))
    mine = json.loads(_rows(state, "SELECT value FROM meta WHERE key = 'checkpoint'")[0][0])
    theirs = json.loads(_rows(ref, "SELECT value FROM meta WHERE key = 'checkpoint'")[0][0])
    for key in ("pos", "balance", "positions", "open_orders", "borrow", "slippage", "signal_seq", "fills"):
        assert mine[key] == theirs[key], key
    assert final["balance"] == setup["summary"]["balance"]


def test_rerunning_a_finished_session_adds_nothing(setup, tmp_path):
    """A restart replays and verifies the whole session, then finds no new events: no duplicates."""
    import shutil

    state = tmp_path / "again"
    shutil.copytree(setup["state"], state)
    before = {t: _rows(state, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("fills", "signals", "equity", "trades")}
    summary = run_paper(setup["scenario"], setup["registry"], state,
                        PaperOptions(speed=1e9, bars=BARS, console=False), model_dir=setup["model"])
    after = {t: _rows(state, f"SELECT COUNT(*) FROM {t}")[0][0] for t in before}
    assert after == before and summary["resumed_from"] == summary["items"]


def test_a_state_that_recovery_cannot_reproduce_is_refused(setup, tmp_path):
    import shutil

    state = tmp_path / "tampered"
    shutil.copytree(setup["state"], state)
    db = sqlite3.connect(state / "state.sqlite")
    db.execute("UPDATE fills SET price = price + 0.01 WHERE i = 3")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="recovery diverged at fills row 3"):
        run_paper(setup["scenario"], setup["registry"], state, PaperOptions(speed=1e9, bars=BARS, console=False),
                  model_dir=setup["model"])


def test_a_state_folder_of_another_session_is_refused_with_one_line(setup, tmp_path, capsys):
    import shutil

    from lbml.cli import main

    state = tmp_path / "other"
    shutil.copytree(setup["state"], state)
    code = main(["paper", str(setup["file"]), "--model", str(setup["model"]), "--state", str(state),
                 "--bars", "10", "--quiet", "--publish-endpoint", _free_endpoint()])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("lbml: error: ") and "bars" in err and len(err.splitlines()) == 1


def test_report_turns_a_state_folder_into_the_backtest_report(setup, tmp_path, capsys):
    import shutil

    from lbml.cli import main

    state = tmp_path / "rep"
    shutil.copytree(setup["state"], state)
    assert main(["report", str(state)]) == 0
    assert "tearsheet.html" in capsys.readouterr().out
    report = state / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("final_equity", "total_return", "n_trades", "costs", "reconciliation_error", "max_drawdown"):
        assert key in metrics
    assert metrics["n_bars"] == BARS and metrics["n_predictions"] == BARS
    assert metrics["reconciliation_error"] < 1e-6 * metrics["initial_equity"]
    assert metrics["final_equity"] == pytest.approx(setup["summary"]["equity"])
    assert metrics["tearsheet"] == "tearsheet.html" and metrics["tearsheet_returns"] == "1h"
    # what data the session was prepared from, as the session's summary said
    assert metrics["data"] == setup["summary"]["data"] == setup["prepared"].data
    assert metrics["data"]["source"] == "synthetic" and metrics["data"]["instruments"][0]["symbol"] == "BNBUSDT"
    assert_tearsheet_matches(report)  # the backtest's report: every number is metrics.json's
    assert {p.name for p in report.iterdir()} >= {"equity.csv", "fills.csv", "trades.csv", "predictions.csv",
                                                  "equity.png", "trades.png", "risk.png"}
    assert (state / "equity.csv").is_file()  # periodic snapshot written while running


def test_report_of_a_folder_without_state_is_a_one_line_error(tmp_path, capsys):
    from lbml.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lbml: error: ") and "not a paper state folder" in err


def test_a_failing_or_slow_model_degrades_without_new_positions_and_replays_durably(setup, tmp_path, monkeypatch):
    """Calls 30 (slow) and 40-45 (raising) are withheld, then 5 more while recovering; a restart
    with a healthy model rebuilds the same session from the recorded decisions."""
    from plugins.model_xgboost import XGBoostModel

    original = XGBoostModel.predict_up_one
    calls = {"n": 0}

    def flaky(self, x):
        calls["n"] += 1
        if calls["n"] == 30:
            time.sleep(1.5)  # far over the budget, so a busy machine cannot blur slow and normal calls
        if 40 <= calls["n"] <= 45:
            raise RuntimeError("model backend unavailable")
        return original(self, x)

    monkeypatch.setattr(XGBoostModel, "predict_up_one", flaky)
    monkeypatch.setattr("lbml.live.session.accelerate", lambda model: model)  # keep XGBoost's own path
    state = tmp_path / "degraded"
    options = PaperOptions(speed=1e9, bars=120, console=False, model_budget_s=1.0)
    summary = run_paper(setup["scenario"], setup["registry"], state, options, model_dir=setup["model"])
    decisions = dict(_rows(state, "SELECT call, decision FROM model_guard"))
    assert decisions[30].startswith("timeout:") and decisions[40].startswith("error: model raised RuntimeError")
    withheld = set(decisions)
    assert withheld == set(range(30, 35)) | set(range(40, 50))  # each failure + 4 recovering calls
    assert summary["degraded"] is None and summary["withheld_predictions"] == len(withheld)

    ref_signals = _rows(setup["state"], "SELECT ts, probability FROM signals ORDER BY seq")[:120]
    signals = _rows(state, "SELECT seq, ts, probability FROM signals ORDER BY seq")
    assert [s[0] for s in signals] == list(range(1, 121 - len(withheld)))  # no gaps in the numbering
    kept = [r for i, r in enumerate(ref_signals, start=1) if i not in withheld]
    assert [s[1:] for s in signals] == kept
    # No entry while degraded: every MARKET fill inside the window is an exit of a position opened before.
    first_bad, last_bad = ref_signals[29][0], ref_signals[49][0]
    fills = _rows(state, "SELECT ts, side, order_type FROM fills ORDER BY i")
    opens = [f for f in fills if first_bad < f[0] <= last_bad and f[2] == "MARKET"]
    assert len(opens) <= 1

    monkeypatch.setattr(XGBoostModel, "predict_up_one", original)
    again = run_paper(setup["scenario"], setup["registry"], state, options, model_dir=setup["model"])
    assert again["resumed_from"] == again["items"] and again["withheld_predictions"] == len(withheld)


def test_a_model_that_never_returns_is_abandoned_at_its_budget_and_the_node_keeps_going(setup, tmp_path, monkeypatch):
    """Call 50 blocks until the test releases it (after the session): the guard gives up on it at
    the budget, every later call is withheld because the model is still busy, and the session
    still processes all its bars (a model call in the node's thread would have frozen it)."""
    import threading

    from plugins.model_xgboost import XGBoostModel

    original = XGBoostModel.predict_up_one
    release = threading.Event()
    calls = {"n": 0}

    def hangs(self, x):
        calls["n"] += 1
        if calls["n"] == 50:
            release.wait()
        return original(self, x)

    monkeypatch.setattr(XGBoostModel, "predict_up_one", hangs)
    monkeypatch.setattr("lbml.live.session.accelerate", lambda model: model)  # keep XGBoost's own path
    try:
        summary = run_paper(setup["scenario"], setup["registry"], tmp_path / "hung",
                            PaperOptions(speed=1e9, bars=60, console=False, model_budget_s=0.25),
                            model_dir=setup["model"])
    finally:
        release.set()
    decisions = dict(_rows(tmp_path / "hung", "SELECT call, decision FROM model_guard"))
    assert decisions[50].startswith("timeout: model did not answer within 250 ms")
    assert all(decisions[n].startswith("timeout: an earlier model call has not returned") for n in range(51, 61))
    assert summary["bars"] == 60 and summary["degraded"].startswith("timeout") and calls["n"] == 50
    signals = _rows(tmp_path / "hung", "SELECT seq, ts, probability FROM signals ORDER BY seq")
    ref = _rows(setup["state"], "SELECT seq, ts, probability FROM signals ORDER BY seq")[:49]
    assert signals == ref


def test_extra_actors_receive_every_prediction_and_the_replay_flag(setup, tmp_path):
    """The seam for a signal publisher: an extra actor sees each Prediction and the session status."""
    import shutil

    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import ActorConfig

    from lbml.engine.messages import PREDICTION_TYPE

    class Collector(Actor):
        def __init__(self, status) -> None:
            super().__init__(ActorConfig(component_id="Collector"))
            self.status = status
            self.seen: list[tuple[int, float, bool]] = []

        def on_start(self) -> None:
            self.subscribe_data(PREDICTION_TYPE)

        def on_data(self, data) -> None:
            self.seen.append((data.ts_event, data.probability, self.status.replaying))

    made = []
    state = tmp_path / "seam"
    shutil.copytree(setup["state"], state)  # a finished session: a restart regenerates every prediction
    run_paper(setup["scenario"], setup["registry"], state, PaperOptions(speed=1e9, bars=BARS, console=False),
              model_dir=setup["model"], extra_actors=[lambda status: made.append(Collector(status)) or made[-1]])
    [collector] = made
    ref = _rows(setup["state"], "SELECT ts, probability FROM signals ORDER BY seq")
    assert [(ts, p) for ts, p, _ in collector.seen] == ref
    assert all(replaying for _, _, replaying in collector.seen)  # all regenerated, none new
    assert collector.status.last_durable_signal_seq == BARS and not collector.status.replaying


def test_paper_session_has_no_look_ahead(setup, tmp_path):
    """Perturbing the market after time t changes nothing the paper node did up to t."""
    from lbml.data.frames import MarketData, bars_from_trades
    from lbml.workflows.prepare import Prepared

    prepared = setup["prepared"]
    bars = prepared.market[setup["scenario"].data.symbol].bars
    window = bars.index[bars.index > prepared.split.test_start]
    cut = window[60]
    rng = __import__("numpy").random.default_rng(5)
    perturbed = {}
    for symbol, data in prepared.market.instruments.items():
        trades, quotes = data.trades.copy(), data.quotes.copy()
        after, q_after = trades.index > cut, quotes.index > cut
        trades.loc[after, "price"] = (trades.loc[after, "price"] * rng.lognormal(0, 0.01, after.sum())).round(2)
        quotes.loc[q_after, ["bid", "ask"]] = quotes.loc[q_after, ["bid", "ask"]] * 0.95
        perturbed[symbol] = dataclasses.replace(data, trades=trades, quotes=quotes, bars=bars_from_trades(trades))
    other = Prepared(prepared.scenario, MarketData(perturbed, prepared.market.funding, prepared.market.bar_minutes),
                     prepared.split)
    state = tmp_path / "perturbed"
    run_paper(setup["scenario"], setup["registry"], state, PaperOptions(speed=1e9, bars=120, console=False),
              model_dir=setup["model"], prepared=other)
    ref = setup["state"]
    upto = cut.value
    for sql in ("SELECT ts, probability FROM signals ORDER BY seq", "SELECT ts, equity FROM equity ORDER BY i",
                "SELECT ts, side, quantity, price FROM fills ORDER BY i"):
        mine, theirs = _rows(state, sql), _rows(ref, sql)
        assert [r for r in mine if r[0] <= upto] == [r for r in theirs if r[0] <= upto], sql
    assert _rows(state, "SELECT probability FROM signals WHERE seq = 80") != \
        _rows(ref, "SELECT probability FROM signals WHERE seq = 80")


def test_a_session_stopped_by_duration_resumes_to_the_uninterrupted_state(setup, tmp_path):
    """``--duration`` stops the node gracefully mid-feed (trader first, clients after a grace period);
    restarts (one itself stopped early, possibly mid-recovery) must end in the reference state.

    The feed is paced so that the whole session takes several seconds and the first stop lands
    inside it; where exactly does not matter, every resume must verify and continue.
    """
    scenario, registry, prepared = setup["scenario"], setup["registry"], setup["prepared"]
    index = prepared.market[scenario.data.symbol].bars.index
    window = index[index > prepared.split.test_start]
    span_s = (window[BARS - 1] - prepared.split.test_start).total_seconds()
    state = tmp_path / "stopped"

    def run(speed: float, duration: float | None) -> dict:
        options = PaperOptions(speed=speed, bars=BARS, duration_s=duration, console=False)
        return run_paper(scenario, registry, state, options, model_dir=setup["model"], prepared=prepared)

    first = run(span_s / 8.0, 2.0)  # ~8 s of paced feed, stopped after 2 s
    assert not first["feed_finished"] and first["bars"] < BARS
    stored = _rows(state, "SELECT value FROM meta WHERE key = 'checkpoint'")
    checkpoint = json.loads(stored[0][0]) if stored else {"pos": 0, "signal_seq": 0}  # stopped before item 1
    # The checkpoint counts exactly the items whose effects were stored: no bar or signal beyond it.
    assert checkpoint["pos"] == first["items"]
    assert _rows(state, "SELECT COUNT(*) FROM equity")[0][0] == first["bars"]
    assert _rows(state, "SELECT COUNT(*) FROM signals")[0][0] == checkpoint["signal_seq"]

    run(1e9, 0.3)  # stopped again soon after start: mid-recovery or a little after it
    final = run(1e9, None)
    assert final["feed_finished"] and final["recovery_complete"] and final["resumed_from"] > 0

    ref = setup["state"]
    for sql in (f"SELECT {', '.join(FILL_COLS)} FROM fills ORDER BY i",
                "SELECT ts, equity, balance, close, borrow, slippage FROM equity ORDER BY i",
                "SELECT seq, ts, probability, close FROM signals ORDER BY seq",
                "SELECT opened, closed, side, quantity, entry_price, exit_price, realized_pnl FROM trades ORDER BY i"):
        assert _rows(state, sql) == _rows(ref, sql), sql
    assert len(_rows(state, "SELECT i FROM fills")) > 5
    for key in ("items", "bars", "fills", "signals", "equity", "balance", "position"):
        assert final[key] == setup["summary"][key], key
