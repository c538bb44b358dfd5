"""Benchmark: research sweeps on Dask against the serial loop, and the cost of MLflow tracking.

- **Walk-forward periods** and **CPCV folds** (``lbml.sweeps``): the same work run serially and as
  Dask tasks on a ``LocalCluster`` of 2 worker processes (one thread each; the machine has 2 cores),
  in the same run; the figure is the wall-clock speed-up serial / Dask. The cluster's start-up is
  measured separately (paid once per command). The results are checked to be identical.
- **Tracking overhead** (``lbml.workflows.tracking``): a small backtest, then what MLflow adds to it on the
  command's critical path (waiting for the store opened in the background + logging at the end),
  and the whole command with tracking on against off, as ratios of the backtest's own time.

Sizes: ``smoke`` (3 days, one pair) and ``full`` (6 days, three alternating serial/Dask pairs, the
median pair reported). Wall-clock ratios on a shared machine move with its load (the same Dask
walk-forward took 13 to 35 s in consecutive runs at load 8-12); every pair and the load average are
in the notes.

Run alone: ``python -m benchmarks.bench_sweeps [smoke|full]``.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAYS = {"smoke": 3, "full": 6}
REPEATS = {"smoke": 1, "full": 3}  # alternating serial/Dask pairs
TREES = {"smoke": 40, "full": 150}
PAIRS = {"smoke": 1, "full": 3}  # backtests with and without tracking


def _scenario(days: int, trees: int = 150, **sections):
    from lbml.scenario import load_scenario, parse_scenario

    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "bench-sweeps"
    raw["data"]["days"] = days
    raw["features"] = {"plugins": [{"plugin": "core"}, {"plugin": "technical"}, {"plugin": "volatility"}]}
    raw["model"]["params"] = {"n_estimators": trees, "max_depth": 3, "n_jobs": 1, "random_state": 3}
    raw["report"] = {"tearsheet": False}
    raw |= sections
    return parse_scenario(raw)


def _wall(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _load() -> str:
    return "load average %.1f/%.1f/%.1f" % os.getloadavg()


def _pairs(label: str, serial, spread, n: int) -> tuple[list[tuple[float, float]], bool]:
    """Alternate serial and Dask runs ``n`` times; return their wall times and whether results matched."""
    times, same = [], True
    for k in range(n):
        a, t_serial = _wall(lambda: serial(k))
        b, t_dask = _wall(lambda: spread(k))
        same = same and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
        times.append((t_serial, t_dask))
        print(f"  {label} pair {k}: serial {t_serial:.1f} s, Dask {t_dask:.1f} s", file=sys.stderr, flush=True)
    return times, same


def _median_pair(times: list[tuple[float, float]]) -> tuple[float, float]:
    return sorted(times, key=lambda t: t[0] / t[1])[len(times) // 2]


def run(size: str) -> list[dict]:
    from lbml.plugins import load_registry
    from lbml.sweeps import open_sweep
    from lbml.workflows.walkforward import run_walkforward
    from lbml.workflows.prepare import prepare, train_model

    registry = load_registry()
    days, n = DAYS[size], REPEATS[size]
    work = Path(tempfile.mkdtemp(prefix="lbml-bench-sweeps-"))
    wf = _scenario(days, TREES[size], validation={"n_splits": 3, "bootstrap_reps": 100},
                   walkforward={"retrain_every_days": max(0.5, (days - 2) / 4), "train_days": 2.0, "window": "sliding"})
    cv = _scenario(days, TREES[size], validation={"method": "cpcv", "n_groups": 6, "n_test_groups": 2, "bootstrap_reps": 100})
    prepared = prepare(cv, registry)
    started = time.perf_counter()
    with open_sweep("local", workers=2) as sweep:
        t_start = time.perf_counter() - started
        wf_times, same_wf = _pairs(
            "walk-forward",
            lambda k: run_walkforward(wf, registry, work, out=work / f"wf-serial-{k}")[1],
            lambda k: run_walkforward(wf, registry, work, out=work / f"wf-dask-{k}", sweep=sweep)[1], n)
        cv_times, same_cv = _pairs(
            "CPCV",
            lambda k: train_model(prepared, registry, work / f"cv-serial-{k}").metrics,
            lambda k: train_model(prepared, registry, work / f"cv-dask-{k}", sweep=sweep).metrics, n)
    rows = []
    for name, times, same, what in (
        ("walkforward_periods_speedup", wf_times, same_wf, f"{days} days, 4 periods, sliding 2-day window"),
        ("cpcv_folds_speedup", cv_times, same_cv, f"{days} days, CPCV(6, 2) = 15 splits as tasks + the final fit"),
    ):
        t_serial, t_dask = _median_pair(times)
        first = times[0][0] / times[0][1]
        rows.append({
            "name": name, "value": t_serial / t_dask, "unit": "x", "baseline": t_serial, "ratio": t_serial / t_dask,
            "target": "> 1 on 2 cores", "met": t_serial > t_dask,
            "note": f"{what}: serial {t_serial:.1f} s / Dask 2x1 {t_dask:.1f} s, median of {n} alternating pairs "
                    f"(all: {', '.join(f'{a / b:.2f}x' for a, b in times)}; first, on fresh workers: {first:.2f}x); "
                    f"identical results: {same}; {_load()}",
        })
    rows.append({
        "name": "dask_localcluster_startup", "value": t_start, "unit": "s", "baseline": _median_pair(wf_times)[0],
        "ratio": t_start / _median_pair(wf_times)[0], "target": None, "met": None,
        "note": "2 spawned worker processes with lbml, nautilus and the plugins imported, paid once per command; "
                "baseline: the serial walk-forward",
    })
    rows += _tracking_overhead(registry, work, days, TREES[size], PAIRS[size])
    return rows


def _tracking_overhead(registry, work: Path, days: int, trees: int, pairs: int) -> list[dict]:
    from lbml.settings import TrackingSettings
    from lbml.workflows.tracking import TrackedRun, Tracker, numeric_metrics, scenario_params
    from lbml.workflows.run import run_scenario

    scenario = _scenario(days, trees, validation={"n_splits": 3, "bootstrap_reps": 100})
    runs = work / "runs"
    # first command on a new store: the store's tables are created (once per runs folder)
    timings = []
    for k in range(pairs):
        _, t_off = _wall(lambda: run_scenario(scenario, registry, runs, out=work / f"off-{k}"))
        started = time.perf_counter()
        tracker = Tracker(TrackingSettings(), runs).start()
        run_dir, metrics = run_scenario(scenario, registry, runs, out=work / f"on-{k}")
        finish_start = time.perf_counter()
        outcome = tracker.finish(TrackedRun("backtest", "bench", scenario_params(scenario), numeric_metrics(metrics),
                                            run_folder=run_dir, data_hash=metrics.get("data_hash")))
        t_finish = time.perf_counter() - finish_start
        t_on = time.perf_counter() - started
        assert outcome["status"] == "logged", outcome
        timings.append((t_off, t_on, t_finish))
    t_off, t_on, t_finish = sorted(timings, key=lambda t: t[1] / t[0])[len(timings) // 2]  # the median pair by ratio
    first = timings[0][2]
    return [
        {"name": "tracking_critical_path", "value": t_finish, "unit": "s", "baseline": t_off,
         "ratio": t_finish / t_off, "target": "<= 5% of the run", "met": t_finish / t_off <= 0.05,
         "note": f"time the command spends in Tracker.finish (wait for the store opened in the background + log "
                 f"~{len(scenario_params(scenario))} params, metrics, 3 artifacts) over the backtest's own time "
                 f"(median of {pairs}; first run on a new store {first:.2f} s); {_load()}"},
        {"name": "tracking_end_to_end", "value": t_on, "unit": "s", "baseline": t_off, "ratio": t_on / t_off,
         "target": None, "met": None,
         "note": "the same backtest with tracking (background import of MLflow + open + log) vs without, "
                 f"median of {pairs} pair(s); includes the machine's noise"},
    ]


if __name__ == "__main__":
    size = sys.argv[1] if len(sys.argv) > 1 else "smoke"
    for row in run(size):
        print(f"{row['name']}: {row['value']:.3g} {row['unit']} (ratio {row['ratio']:.3g}) - {row['note']}")
