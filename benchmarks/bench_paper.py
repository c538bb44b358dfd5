"""Paper node throughput against the backtest on the same data, and restart (recovery) speed.

Run: ``python -c "from benchmarks.bench_paper import run; print(run('smoke'))"``.
"""

import dataclasses
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np


def run(size: str) -> list[dict]:
    from lbml.engine.backtest import run_backtest
    from lbml.live.session import PaperOptions, run_paper
    from lbml.models.artifact import load_artifact
    from lbml.research.training import scenario_pipeline
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario
    from lbml.workflows.prepare import prepare, train_model, warm_up

    from benchmarks._scenarios import smoke_model

    days, bars = (3, 200) if size == "smoke" else (6, 1500)
    registry = load_registry()
    scenario = load_scenario("scenarios/default.toml").with_data(days=days)
    if size == "smoke":
        scenario = smoke_model(scenario)
    prepared = prepare(scenario, registry)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_model(prepared, registry, tmp / "model")
        index = prepared.market[scenario.data.symbol].bars.index
        end = index[index > prepared.split.test_start][bars - 1]
        pipeline = scenario_pipeline(scenario, prepared.market, registry)
        artifact = load_artifact(tmp / "model", registry, pipeline.schema())
        pipeline.load_fitted_state(artifact.feature_state)
        warm_up(pipeline, prepared)
        t0 = time.perf_counter()
        bt = run_backtest(scenario, prepared.market, dataclasses.replace(prepared.split, test_end=end), pipeline,
                          artifact.model)
        bt_s = time.perf_counter() - t0
        # Throughput of a trading session: trade whatever the gate says about the tiny model.
        options = PaperOptions(speed=1e9, bars=bars, console=False, ignore_edge_gate=True)
        t0 = time.perf_counter()
        summary = run_paper(scenario, registry, tmp / "state", options, model_dir=tmp / "model")
        paper_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_paper(scenario, registry, tmp / "state", options, model_dir=tmp / "model")
        resume_s = time.perf_counter() - t0
        db = sqlite3.connect(tmp / "state" / "state.sqlite")
        lat = np.array([r[0] for r in db.execute("SELECT latency_us FROM signals") if r[0] is not None])
        db.close()
    items = summary["items"]
    bt_rate = bt.n_events / bt_s
    paper_rate = items / summary["feed_seconds"]
    return [
        {"name": "paper_items_per_s", "value": paper_rate, "unit": "items/s", "baseline": bt_rate,
         "ratio": paper_rate / bt_rate, "target": None, "met": None,
         "note": f"{items} ticks/quotes/bars ({bars} bars) through the TradingNode, feed loop only (one "
                 f"idle-wait per item); baseline = BacktestEngine events/s on the same window"},
        {"name": "paper_restart_seconds", "value": resume_s, "unit": "s", "baseline": paper_s,
         "ratio": resume_s / paper_s, "target": None, "met": None,
         "note": "restart of the finished session: replay + verification of every item; baseline = first run"},
        {"name": "paper_bar_latency_p50", "value": float(np.percentile(lat, 50)), "unit": "us",
         "baseline": None, "ratio": None, "target": None, "met": None,
         "note": "SignalActor features + model per bar inside the TradingNode"},
    ]
