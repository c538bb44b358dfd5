"""Benchmark: cost of refitting parameter-learning feature plugins (GARCH) inside every CV fold.

``lbml.research.training.train`` computes the training window's features once (every plugin fitted
on the whole window) and then, per CV split, refits only the plugins that learn parameters on the
split's training bars and replays just them (``lbml.research.folds.FoldFeatures``). This measures
that per-fold work on the default scenario's training window (``smoke``: 4 days, ``full``: the
scenario's 30 days): the 5 purged walk-forward splits and the 15 CPCV(6, 2) splits. Baseline (same
run): the one-off feature computation of the window (``training_set``: fit + replay of all plugins
+ labels), which training paid before per-fold fitting existed too. Figures in process CPU seconds
(the machine is shared) and wall seconds.

Run alone: ``python -m benchmarks.bench_fold_features [smoke|full]``.
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DAYS = {"smoke": 4, "full": None}


def _timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def run(size: str) -> list[dict]:
    from lbml.research.folds import FoldFeatures
    from lbml.research.training import scenario_pipeline, training_set, window_inputs
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario
    from lbml.research.validation import cpcv, purge_train, purged_walk_forward
    from lbml.workflows.prepare import prepare

    import arch  # noqa: F401  (imported once per process either way; keep it out of both timings)

    registry = load_registry()
    scenario = load_scenario(ROOT / "scenarios" / "default.toml")
    if DAYS[size] is not None:
        scenario = scenario.with_data(days=DAYS[size])
    prepared = prepare(scenario, registry)
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    ts, base_cpu, base_wall = _timed(lambda: training_set(scenario, prepared.market, pipeline, prepared.split))

    # the development span exactly as ``train`` cuts it (minus the purged calibration block)
    v = scenario.validation
    n = len(ts.y)
    t0n = ts.X.index.asi8
    t1n = pd.DatetimeIndex(ts.t1.to_numpy()).asi8
    embargo = pd.Timedelta(minutes=prepared.market.bar_minutes) * math.ceil(v.embargo_fraction * n)
    n_cal = max(100, int(n * v.calibration_fraction))
    dev = purge_train(np.arange(n - n_cal), np.arange(n - n_cal, n), t0n, t1n, int(embargo.value))
    t0, t1 = ts.X.index[dev], pd.DatetimeIndex(ts.t1.to_numpy()[dev])
    inputs = window_inputs(scenario, prepared.market, prepared.split)
    folds = FoldFeatures(pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding,
                         ts.X.to_numpy()[dev], t0, t1)

    rows = []
    plans = {"walk_forward_5": purged_walk_forward(t0, t1, 5, embargo), "cpcv_6_2": cpcv(t0, t1, 6, 2, embargo)}
    for label, splits in plans.items():
        _, cpu, wall = _timed(lambda: [folds(s) for s in splits])
        note = (f"{len(splits)} splits, refitting {', '.join(folds.plugin_names)} on {n:,} samples x "
                f"{ts.X.shape[1]} features ({len(inputs.bars):,} window bars); baseline: the window's one-off "
                f"feature computation ({base_cpu:.2f} cpu-s, {base_wall:.2f} s wall)")
        rows.append({"name": f"fold_feature_refit_{label}_cpu_{size}", "value": round(cpu, 3), "unit": "cpu-s",
                     "baseline": round(base_cpu, 3), "ratio": round(cpu / base_cpu, 3), "target": None,
                     "met": None, "note": note})
        rows.append({"name": f"fold_feature_refit_{label}_wall_{size}", "value": round(wall, 3), "unit": "s",
                     "baseline": round(base_wall, 3), "ratio": round(wall / base_wall, 3), "target": None,
                     "met": None, "note": f"per split {wall / len(splits):.3f} s wall"})
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "smoke"), indent=2))
