"""How long a paper session's bar loop stops when a retrained model is swapped in.

A replay session of the retrain tests' scenario (4 days, planted edge, a 2,000-bar window retrained
about every 15 bars) runs at ``--speed``; every call of the retrainer on the bar loop
(``Retrainer.on_bar``, after each committed bar) is timed, and the calls that swapped a candidate in
(the ``retrains`` rows' ``swap_pos``) are reported next to the median call.

Run: ``python -m benchmarks.bench_retrain_swap --speed 150 --bars 240`` (from the repository root; one
JSON line), or in the suite (``python -m benchmarks.run --only retrain_swap``: smoke size 120 bars at
speed 150, full size also 60 bars at speed 30). The measurement only uses ``run_paper`` and times the
method from outside, so it measures any version of lbml the same way.
"""

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path


def run(size: str) -> list[dict]:
    """The suite's rows: the longest bar-loop call at a swap per setting (baseline: the median call)."""
    settings = [(150.0, 120)] if size == "smoke" else [(150.0, 240), (30.0, 60)]
    rows = []
    for speed, bars in settings:
        got = measure(speed, bars)
        times = [s["bar_loop_s"] for s in got["swaps"]]
        value = max(times) if times else float("nan")
        rows.append({"name": f"retrain_swap_bar_loop_max_speed{speed:g}", "value": value, "unit": "s",
                     "baseline": got["median_call_s"], "ratio": value / got["median_call_s"], "target": None,
                     "met": None, "note": f"{len(times)} swaps in {bars} bars ({', '.join(f'{t:.3f}' for t in times)} s); "
                                          "baseline = the median retrainer call on other bars"})
    return rows


def measure(speed: float, bars: int) -> dict:
    from lbml.live import retrain
    from lbml.live.session import PaperOptions, run_paper
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario, parse_scenario
    from lbml.workflows.prepare import prepare, train_model

    raw = load_scenario("scenarios/default.toml").with_data(days=4, edge=0.3).to_dict()
    raw["split"]["embargo_bars"] = 374
    raw["gate"]["enabled"] = False
    raw["validation"]["calibration"] = "none"
    raw["model"]["params"].update(n_estimators=60, min_child_weight=5.0)
    raw["paper"] = {"retrain": {"every_days": 0.01, "window_bars": 2000, "min_bars_between": 30}}
    scenario = parse_scenario(raw)
    registry = load_registry()
    prepared = prepare(scenario, registry)

    calls: dict[int, float] = {}
    on_bar = retrain.Retrainer.on_bar

    def timed(self, pos: int, ts: int, bar: int) -> None:
        t0 = time.perf_counter()
        try:
            on_bar(self, pos, ts, bar)
        finally:
            calls[pos] = time.perf_counter() - t0

    retrain.Retrainer.on_bar = timed
    with tempfile.TemporaryDirectory() as tmp:
        train_model(prepared, registry, Path(tmp) / "model")
        state = Path(tmp) / "state"
        run_paper(scenario, registry, state, PaperOptions(speed=speed, bars=bars, console=False),
                  model_dir=Path(tmp) / "model", prepared=prepared)
        db = sqlite3.connect(state / "state.sqlite")
        rows = db.execute("SELECT i, status, trigger_bar, swap_bar, swap_pos FROM retrains ORDER BY i").fetchall()
        db.close()
    swaps = [{"retrain": i, "trigger_bar": trig, "swap_bar": swap_bar, "bar_loop_s": round(calls[pos], 4)}
             for i, status, trig, swap_bar, pos in rows if status == "accepted"]
    others = [d for pos, d in calls.items() if pos not in {r[4] for r in rows}]
    return {"speed": speed, "bars": bars, "retrains": [r[1] for r in rows], "swaps": swaps,
            "median_call_s": round(statistics.median(others), 6), "max_other_call_s": round(max(others), 4)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=150.0)
    parser.add_argument("--bars", type=int, default=240)
    args = parser.parse_args()
    print(json.dumps(measure(args.speed, args.bars)))
    sys.exit(0)
