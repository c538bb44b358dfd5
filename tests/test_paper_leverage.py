"""Paper trading with the leverage models: exchange margin (funding, liquidation) and Aave-style
lending (interest, gas) agree with the backtest, survive restarts, and report like a backtest.

Both sessions trade a 4-day synthetic market with a planted edge on the ``core`` features; the
window starts 20 bars before a funding settlement. The exchange session runs 100x isolated margin
with a 3% stop so that its liquidation price is hit before the stop (one liquidation in the window).
"""

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from lbml.engine.backtest import run_backtest
from lbml.live.session import PaperOptions, run_paper
from lbml.live.state import COST_COLUMNS, EQUITY_COLUMNS, StateError
from lbml.models.artifact import load_artifact
from lbml.research.training import scenario_pipeline
from lbml.plugins import load_registry
from lbml.scenario import Scenario, load_scenario
from lbml.workflows.prepare import prepare, train_model, warm_up

from .conftest import without_edge_gate
from .paper_support import state_rows as _rows

# Each test waits on a node, a socket or a subprocess: it fails after 300 s instead of hanging.
pytestmark = pytest.mark.timeout(300)

BARS = 300
KINDS = ("exchange_margin", "aave_lending")


def _scenario(kind: str, embargo_bars: int = 60) -> Scenario:
    base = load_scenario("scenarios/aave_wbnb_3x.toml").with_data(days=4, edge=0.3)
    update: dict = {"split": base.split.model_copy(update={"embargo_bars": embargo_bars})}
    if kind == "exchange_margin":
        update["leverage"] = base.leverage.model_copy(
            update={"model": "exchange_margin", "margin_leverage": 100.0, "funding": True, "funding_multiplier": 20.0}
        )
        update["strategy"] = base.strategy.model_copy(
            # held for the label's horizon: the priced payoff of a 240-bar hold on a 15-bar signal is too
            # thin for the EV rule to trade at all, and this test needs trades to compare
            update={"max_leverage": 20.0, "kelly_fraction": 1.0, "stop_loss_pct": 0.03, "take_profit_pct": 0.03,
                    "max_holding_bars": 15}
        )
    else:
        update["costs"] = base.costs.model_copy(update={"gas_per_tx": 0.5})
    return without_edge_gate(base.model_copy(update=update))


def _before_a_settlement(kind: str, registry) -> Scenario:
    """The scenario with an embargo that starts the paper window 20 bars before a funding time."""
    scenario = _scenario(kind)
    prepared = prepare(scenario, registry)
    funding = prepared.market.funding[scenario.data.symbol].index
    settlement = funding[funding > prepared.split.test_start][0]
    bars = prepared.market[scenario.data.symbol].bars.index
    gap = int(((bars > prepared.split.test_start) & (bars < settlement)).sum())
    return _scenario(kind, embargo_bars=60 + gap - 20)


@pytest.fixture(scope="module", params=KINDS)
def session(request, tmp_path_factory):
    """One uninterrupted paper session of BARS bars and the backtest of the same window."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    registry = load_registry()
    scenario = _before_a_settlement(kind, registry)
    prepared = prepare(scenario, registry)
    model = root / "model"
    train_model(prepared, registry, model)
    state = root / "state"
    summary = run_paper(scenario, registry, state, PaperOptions(speed=1e9, bars=BARS, console=False),
                        model_dir=model, prepared=prepared)

    index = prepared.market[scenario.data.symbol].bars.index
    split = dataclasses.replace(prepared.split, test_end=index[index > prepared.split.test_start][BARS - 1])
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    artifact = load_artifact(model, registry, pipeline.schema())
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    backtest = run_backtest(scenario, prepared.market, split, pipeline, artifact.model, ev_margin=artifact.ev_margin,
                            pricing=artifact.pricing)
    return {"kind": kind, "root": root, "scenario": scenario, "registry": registry, "prepared": prepared,
            "model": model, "state": state, "summary": summary, "backtest": backtest}


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value


def test_paper_charges_every_leverage_cost_as_the_backtest_does(session):
    bt, state = session["backtest"], session["state"]
    last_ts = bt.record.equity[-1][0]  # the backtest never emits the window's last bar

    fills = _rows(state, "SELECT ts, side, quantity, price, commission, liquidity, order_type, liquidation "
                         "FROM fills ORDER BY i")
    expected = [(f["ts"], f["side"], f["quantity"], f["price"], f["commission"], f["liquidity"], f["order_type"],
                 int(f["liquidation"])) for f in bt.record.fills]
    assert len(expected) > 5 and fills[: len(expected)] == expected

    equity = _rows(state, f"SELECT {', '.join(EQUITY_COLUMNS)} FROM equity ORDER BY i")
    assert [r[:4] for r in equity[: len(bt.record.equity)]] == [tuple(r) for r in bt.record.equity]
    risk = [(r[0], *r[6:]) for r in equity[: len(bt.record.risk)]]
    assert risk == [tuple(_nan_to_none(v) for v in r) for r in bt.record.risk]

    costs = pd.DataFrame(_rows(state, f"SELECT {', '.join(COST_COLUMNS)} FROM costs ORDER BY i"), columns=COST_COLUMNS)
    ledgers = {"borrow": bt.borrow, "slippage": bt.slippage, "gap_slippage": bt.gap_slippage,
               "funding": bt.funding, "liquidation_penalty": bt.liquidation, "gas": bt.gas}
    for kind, ledger in ledgers.items():
        paper = costs[(costs.kind == kind) & (costs.ts <= last_ts)]
        assert list(zip(paper.ts, paper.amount)) == [e for e in ledger.entries if e[0] <= last_ts], kind

    liquidations = _rows(state, "SELECT ts, side, quantity, price, penalty FROM liquidations ORDER BY i")
    assert liquidations == [(e["ts"], e["side"], e["quantity"], e["price"], e["penalty"]) for e in bt.liquidations]

    if session["kind"] == "exchange_margin":
        assert bt.n_liquidations >= 1 and len(bt.funding.entries) >= 1
        assert any(liq for *_, liq in fills)  # the liquidation is a fill on both sides
    else:
        assert bt.borrow.total > 0 and bt.gas.total > 0 and bt.n_liquidations == 0


def test_a_stopped_leverage_session_resumes_to_the_uninterrupted_state(session, tmp_path):
    scenario, prepared = session["scenario"], session["prepared"]
    index = prepared.market[scenario.data.symbol].bars.index
    span_s = (index[index > prepared.split.test_start][BARS - 1] - prepared.split.test_start).total_seconds()
    state = tmp_path / "stopped"

    def run(speed: float, duration: float | None) -> dict:
        options = PaperOptions(speed=speed, bars=BARS, duration_s=duration, console=False)
        return run_paper(scenario, session["registry"], state, options, model_dir=session["model"], prepared=prepared)

    first = run(span_s / 6.0, 2.0)  # ~6 s of paced feed, stopped after 2 s
    assert not first["feed_finished"] and 0 < first["bars"] < BARS
    final = run(1e9, None)
    assert final["recovery_complete"] and final["resumed_from"] > 0 and final["feed_finished"]

    ref = session["state"]
    for table, order in (("fills", "i"), ("equity", "i"), ("costs", "i"), ("liquidations", "i"), ("signals", "seq"),
                         ("trades", "i")):
        columns = "*" if table not in ("fills", "liquidations") else "ts, side, quantity, price"
        sql = f"SELECT {columns} FROM {table} ORDER BY {order}"
        mine, theirs = _rows(state, sql), _rows(ref, sql)
        if table == "signals":  # latency is wall-clock
            mine, theirs = [r[:4] for r in mine], [r[:4] for r in theirs]
        assert mine == theirs, table
    mine = json.loads(_rows(state, "SELECT value FROM meta WHERE key = 'checkpoint'")[0][0])
    theirs = json.loads(_rows(ref, "SELECT value FROM meta WHERE key = 'checkpoint'")[0][0])
    for key in ("pos", "balance", "positions", "costs", "n_liquidations", "signal_seq"):
        assert mine[key] == theirs[key], key


def test_a_tampered_cost_ledger_is_caught_on_restart(session, tmp_path):
    state = tmp_path / "tampered"
    shutil.copytree(session["state"], state)
    db = sqlite3.connect(state / "state.sqlite")
    db.execute("UPDATE costs SET amount = amount * 1.001 WHERE i = (SELECT MIN(i) FROM costs)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="recovery diverged at costs row 1"):
        run_paper(session["scenario"], session["registry"], state,
                  PaperOptions(speed=1e9, bars=BARS, console=False), model_dir=session["model"],
                  prepared=session["prepared"])


def test_the_report_of_a_leverage_session_has_the_backtest_risk_outputs(session, tmp_path, capsys):
    from lbml.cli import main

    state = tmp_path / "rep"
    shutil.copytree(session["state"], state)
    assert main(["report", str(state)]) == 0
    capsys.readouterr()
    report = state / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["leverage_model"] == session["kind"]
    assert metrics["reconciliation_error"] < 1e-6 * metrics["initial_equity"]
    costs = _rows(state, "SELECT kind, SUM(amount) FROM costs GROUP BY kind")
    totals = dict(costs)
    assert metrics["costs"]["borrow"] == pytest.approx(totals.get("borrow", 0.0))
    assert metrics["costs"]["funding"] == pytest.approx(totals.get("funding", 0.0))
    assert metrics["costs"]["liquidation_penalty"] == pytest.approx(totals.get("liquidation_penalty", 0.0))
    assert metrics["n_liquidations"] == len(_rows(state, "SELECT DISTINCT order_id FROM liquidations"))
    assert {p.name for p in report.iterdir()} >= {"risk.csv", "risk.png", "ledgers.csv", "liquidations.csv"}
    ledgers = pd.read_csv(report / "ledgers.csv")
    assert set(ledgers.kind) == {kind for kind, total in totals.items()}
    if session["kind"] == "exchange_margin":
        assert metrics["n_liquidations"] >= 1 and metrics["costs"]["funding"] != 0.0
    else:
        commissions = sum(r[0] for r in _rows(state, "SELECT commission FROM fills"))
        assert metrics["costs"]["fees"] == pytest.approx(commissions)  # gas is reported on its own
        assert metrics["costs"]["gas"] == pytest.approx(0.5 * len(_rows(state, "SELECT i FROM fills")))


def test_funding_settlements_from_a_live_feed_are_charged_past_the_known_series(tmp_path):
    """A zmq session whose data has no funding after the training window: every settlement comes
    from the feed (``FundingModule.announce``) and is charged at its time, as the replay charges the
    stored series (there, at the first trade at or after the settlement time)."""
    import socket
    import threading

    import zmq

    from lbml.live.events import END_OF_STREAM, encode_event, replay_events
    from lbml.live.node import paper_symbols

    registry = load_registry()
    scenario = _before_a_settlement("exchange_margin", registry)
    prepared = prepare(scenario, registry)
    model = tmp_path / "model"
    train_model(prepared, registry, model)
    symbol, split = scenario.data.symbol, prepared.split
    settlements = prepared.market.funding[symbol].loc[split.test_start:]
    blind = dataclasses.replace(prepared, market=dataclasses.replace(
        prepared.market, funding={symbol: prepared.market.funding[symbol].loc[: split.test_start]}))
    index = prepared.market[symbol].bars.index
    end = index[index > split.test_start][BARS - 1]
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    events = list(replay_events(prepared.market, paper_symbols(scenario, prepared.market, pipeline),
                                split.test_start, end, funding=True))
    assert sum(1 for e in events if e.kind == 2) == ((settlements.index > split.test_start)
                                                     & (settlements.index <= end)).sum() >= 1

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"

    def serve() -> None:
        sock = zmq.Context.instance().socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind(endpoint)
        if sock.poll(60_000, zmq.POLLIN):
            sock.recv()
            for event in events:
                sock.send(encode_event(event))
            sock.send(END_OF_STREAM)
        sock.close(linger=2000)

    server = threading.Thread(target=serve)
    server.start()
    try:
        run_paper(scenario, registry, tmp_path / "zmq", PaperOptions(
            feed="zmq", endpoint=endpoint, console=False, duration_s=120), model_dir=model, prepared=blind)
    finally:
        server.join()
    replay = tmp_path / "replay"
    run_paper(scenario, registry, replay, PaperOptions(speed=1e9, bars=BARS, console=False), model_dir=model,
              prepared=prepared)
    live = _rows(tmp_path / "zmq", "SELECT ts, amount FROM costs WHERE kind = 'funding' ORDER BY i")
    stored = _rows(replay, "SELECT ts, amount FROM costs WHERE kind = 'funding' ORDER BY i")
    funding_times = [e.ts for e in events if e.kind == 2]
    assert [ts for ts, _ in live] == funding_times[: len(live)] and len(live) == len(stored) >= 1
    for (_, paid_live), (_, paid_stored) in zip(live, stored):
        assert paid_live == pytest.approx(paid_stored, rel=2e-3)  # marked one trade apart


def test_a_state_folder_of_an_older_schema_is_refused_in_one_line(tmp_path):
    from lbml.live.state import StateStore

    store = StateStore(tmp_path)
    store.put("session", {"scenario": "x"})
    store.put("schema_version", 1)
    store.close()
    with pytest.raises(StateError, match=r"state schema 1 was written by another lbml version"):
        StateStore(tmp_path)
