"""Benchmark: every model kind on the same data — training time, per-bar inference, out-of-sample scores.

``python -m benchmarks.bench_models [smoke|full]`` prints the README's model table (Markdown) and
writes it with the raw numbers to ``benchmarks/results/models.{md,json}``; ``python -m
benchmarks.run --only models`` runs it through the suite runner (one row per model and dataset).

For each dataset and model kind, ``lbml.research.training.train`` runs exactly as ``lbml train``
does (purged walk-forward CV with early stopping inside each training fold, per-fold calibration,
final fit, calibration block; ``scenarios/default.toml``'s features, labels, validation and costs)
with no trial registry, so the DSR's N is the 4 EV margins that model tried, not the whole table.

- training time: wall-clock seconds of ``train`` on 2 shared cores: the feature replay of the
  training window (the same for every model; GARCH refitted per fold), purged CV, final fit,
  calibration and statistics.
- per-bar inference: the model as the engine calls it (``SignalActor`` → ``predict_up_one`` on the
  artifact's calibrated model, compiled trees when they apply: ``lbml.models.compiled.accelerate``)
  on ``N_INFERENCE`` feature rows of the backtest window, timed one call at a time; median and p99.
- AUC / log loss: out-of-fold, labelled bars; DSR: out-of-fold trades net of costs.

Datasets: the embedded synthetic market (``data.edge = 0.3``, ticks, quotes, depth, funding,
reference) and one real file, Binance spot BNBUSDT 1m klines (bars only: the plugins needing ticks,
quotes, depth, funding or a reference are left out), first ``days`` days.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REAL_FILE = ("klines_1m", "binance_spot_2026-03-23_to_2026-04-22", "BNBUSDT-1m.csv.gz")
SIZES = {"smoke": {"days": 4, "lstm_epochs": 3}, "full": {"days": 8, "lstm_epochs": 10}}
N_INFERENCE = 2_000


def model_kinds(lstm_epochs: int) -> dict[str, tuple[str, dict]]:
    """Model kind → (plugin, params): the default scenario's XGBoost, the others at their defaults."""
    xgb = {"n_estimators": 300, "max_depth": 3, "learning_rate": 0.05, "min_child_weight": 50.0,
           "colsample_bytree": 0.5, "random_state": 7}
    lstm = {"window": 16, "hidden_size": 16, "max_epochs": lstm_epochs, "random_state": 7}
    return {
        "xgboost": ("xgboost", xgb),
        "random_forest": ("random_forest", {"n_estimators": 200, "random_state": 7}),
        "logistic": ("logistic", {"random_state": 7}),
        "linear_svm": ("linear_svm", {"random_state": 7}),
        "lstm": ("lstm", lstm),
        "ensemble weighted (logistic, xgboost, lstm)": ("ensemble", {"method": "weighted", "members": [
            {"plugin": "logistic", "params": {"random_state": 7}}, {"plugin": "xgboost", "params": xgb},
            {"plugin": "lstm", "params": lstm}]}),
        "ensemble stacking (logistic, random_forest, xgboost)": ("ensemble", {"method": "stacking", "members": [
            {"plugin": "logistic", "params": {"random_state": 7}},
            {"plugin": "random_forest", "params": {"n_estimators": 100, "random_state": 7}},
            {"plugin": "xgboost", "params": xgb}]}),
    }


def datasets(days: int, shared_data: Path | None, folder: Path):
    """(name, scenario) pairs: the embedded market and, when the shared data is there, the real file."""
    from lbml.scenario import load_scenario

    base = load_scenario(HERE.parent / "scenarios" / "default.toml")
    out = [(f"embedded synthetic, {days} days", base.with_data(days=days))]
    if shared_data is not None and shared_data.joinpath(*REAL_FILE).is_file():
        path = folder / "BNBUSDT-1m.csv"
        pd.read_csv(shared_data.joinpath(*REAL_FILE)).head(days * 1440).to_csv(path, index=False)
        out.append((f"Binance BNBUSDT 1m, {days} days", base.with_data(
            source="files", paths=(path,), symbol="BNBUSDT", reference_symbol=None)))
    return out


def _with_model(scenario, plugin: str, params: dict):
    return scenario.model_copy(update={"model": scenario.model.model_copy(update={"plugin": plugin, "params": params})})


def per_bar_cost(scenario, prepared, registry, model_dir: Path, cache: dict) -> tuple[float, float]:
    """Median and p99 µs of one ``predict_up_one`` call, as the engine makes it.

    The rows are the backtest window's first ``N_INFERENCE`` finite feature rows (replayed once per
    feature layout and fitted state, ``cache``).
    """
    from lbml.features.market import market_features
    from lbml.models.artifact import load_artifact
    from lbml.models.compiled import accelerate
    from lbml.research.training import scenario_pipeline

    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    artifact = load_artifact(model_dir, registry, pipeline.schema())
    key = (pipeline.schema().hash, json.dumps(artifact.feature_state, sort_keys=True, default=str))
    if key not in cache:
        pipeline.load_fitted_state(artifact.feature_state)
        cfg = scenario.data
        end = prepared.market[cfg.symbol].bars.index[prepared.market[cfg.symbol].bars.index > prepared.split.test_start]
        X = market_features(pipeline, prepared.market, cfg.symbol, cfg.reference_symbol,
                            end=end[min(len(end) - 1, N_INFERENCE + pipeline.warmup_bars)])
        rows = X.loc[X.index > prepared.split.test_start].to_numpy()
        cache[key] = rows[np.isfinite(rows).all(axis=1)][:N_INFERENCE]
    rows = cache[key]
    model = accelerate(artifact.model)
    model.predict_up_one(rows[0])
    times = np.empty(len(rows))
    for i, row in enumerate(rows):
        started = time.perf_counter_ns()
        model.predict_up_one(row)
        times[i] = time.perf_counter_ns() - started
    return float(np.median(times) / 1e3), float(np.percentile(times, 99) / 1e3)


def measure(size: str, shared_data: Path | None) -> list[dict]:
    """Train and time every model kind on every dataset; return one record per pair."""
    import torch

    from lbml.errors import DataError
    from lbml.research.training import train
    from lbml.plugins import load_registry
    from lbml.workflows.prepare import prepare

    torch.set_num_threads(1)
    registry = load_registry()
    spec = SIZES[size]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for data_name, base in datasets(spec["days"], shared_data, Path(tmp)):
            prepared = prepare(base, registry)
            rows_cache: dict = {}
            for kind, (plugin, params) in model_kinds(spec["lstm_epochs"]).items():
                scenario = _with_model(base, plugin, params)
                out = Path(tmp) / f"{len(records)}"
                started = time.perf_counter()
                try:
                    result = train(scenario, prepared.market, registry, prepared.split, out, reports=False)
                except (DataError, ValueError) as exc:  # a degenerate model, a fold too small for the plugin: said so
                    records.append({"dataset": data_name, "model": kind, "refused": str(exc).splitlines()[0]})
                    print(f"{data_name} | {kind}: refused: {exc}", file=sys.stderr)
                    continue
                seconds = time.perf_counter() - started
                median_us, p99_us = per_bar_cost(scenario, prepared, registry, out, rows_cache)
                m = result.metrics
                records.append({
                    "dataset": data_name, "model": kind, "train_s": seconds, "n_samples": result.n_samples,
                    "n_inputs": result.n_features, "per_bar_us": median_us, "per_bar_p99_us": p99_us,
                    "oos_auc": m.get("oos_auc"), "oos_logloss": m.get("oos_logloss"), "dsr": m.get("dsr"),
                    "n_trials": m.get("n_trials"),
                })
                print(f"{data_name} | {kind}: {seconds:.1f} s, {median_us:.1f} µs/bar, AUC {m.get('oos_auc')}",
                      file=sys.stderr)
    return records


def _f(value, digits: int) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def table(records: list[dict]) -> str:
    lines = ["| data | model | inputs | train (s) | per bar (µs, median / p99) | OOS AUC | OOS log loss | DSR |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        if "refused" in r:
            lines.append(f"| {r['dataset']} | {r['model']} | refused: {r['refused']} | | | | | |")
            continue
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['n_inputs']} | {r['train_s']:.1f} | "
            f"{_f(r['per_bar_us'], 1)} / {_f(r['per_bar_p99_us'], 1)} | {_f(r['oos_auc'], 3)} | "
            f"{_f(r['oos_logloss'], 4)} | {_f(r['dsr'], 3)} |"
        )
    return "\n".join(lines)


def run(size: str) -> list[dict]:
    """Rows for ``benchmarks.run``: training seconds per model and dataset (scores in the note)."""
    import os

    shared = os.environ.get("SHARED_DATA_DIR")
    return [
        {"name": f"train_{r['model'].split(' ')[0]}_{i}_{size}", "value": round(r["train_s"], 1), "unit": "s",
         "baseline": None, "ratio": None, "target": None, "met": None,
         "note": (f"{r['dataset']}, {r['model']}: per bar {r['per_bar_us']:.1f} µs, OOS AUC {_f(r['oos_auc'], 3)}, "
                  f"log loss {_f(r['oos_logloss'], 4)}, DSR {_f(r['dsr'], 3)}")}
        for i, r in enumerate(measure(size, Path(shared) if shared else None)) if "refused" not in r
    ]


def main(argv: list[str]) -> int:
    import os

    size = argv[0] if argv else "smoke"
    if size not in SIZES:
        print(f"usage: python -m benchmarks.bench_models [{'|'.join(SIZES)}]", file=sys.stderr)
        return 2
    shared = os.environ.get("SHARED_DATA_DIR")
    records = measure(size, Path(shared) if shared else None)
    text = table(records)
    print(text)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "models.md").write_text(
        f"`SHARED_DATA_DIR=<shared data> python -m benchmarks.bench_models {size}`\n\n{text}\n")
    (results / "models.json").write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
