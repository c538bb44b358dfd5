"""Benchmark: cost of the look-ahead gate that runs before every train, backtest, paper, demo, ...

``lbml.features.guard.guard_look_ahead`` checks each of the default scenario's feature plugins on a
bounded window around the training-window end and caches each verdict. Measured: a cold run (empty
cache: every plugin checked) and a warm run (every verdict read back from the cache). Baseline (same
run): ``workflows.prepare`` without the gate, i.e. loading (generating) the market and splitting it,
which every one of those commands pays anyway. ``smoke``: 4 days; ``full``: the scenario's 30 days.
Figures in process CPU seconds (the machine is shared) and wall seconds.

Run alone: ``python -m benchmarks.bench_look_ahead [smoke|full]``.
"""

import sys
import tempfile
from pathlib import Path

from benchmarks.bench_fold_features import DAYS, ROOT, _timed  # same sizes, same timer


def run(size: str) -> list[dict]:
    from lbml.features.guard import LookAheadPolicy, guard_look_ahead
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario
    from lbml.workflows.prepare import prepare

    import arch  # noqa: F401  (imported once per process either way; keep it out of the timings)

    registry = load_registry()
    scenario = load_scenario(ROOT / "scenarios" / "default.toml")
    if DAYS[size] is not None:
        scenario = scenario.with_data(days=DAYS[size])
    prepared, base_cpu, base_wall = _timed(lambda: prepare(scenario, registry))
    rows = []
    with tempfile.TemporaryDirectory(prefix="lbml-bench-look-ahead-") as cache:
        policy = LookAheadPolicy(Path(cache))
        for label in ("cold", "warm"):
            check, cpu, wall = _timed(
                lambda: guard_look_ahead(scenario, prepared.market, prepared.split.train_end, registry, policy)
            )
            note = (f"status {check['status']}, {len(check['plugins'])} plugins, window {check['window']['bars']:,} "
                    f"bars, {check['window']['cuts']} cuts; baseline: prepare() without the gate "
                    f"({base_cpu:.2f} cpu-s, {base_wall:.2f} s wall)")
            rows.append({"name": f"look_ahead_gate_{label}_cpu_{size}", "value": round(cpu, 3), "unit": "cpu-s",
                         "baseline": round(base_cpu, 3), "ratio": round(cpu / base_cpu, 3), "target": None,
                         "met": None, "note": note})
            rows.append({"name": f"look_ahead_gate_{label}_wall_{size}", "value": round(wall, 3), "unit": "s",
                         "baseline": round(base_wall, 3), "ratio": round(wall / base_wall, 3), "target": None,
                         "met": None, "note": ""})
    return rows


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "full"):
        print(f"{row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']}) {row['note']}")
