"""Benchmark: purged walk-forward CV + final fit of the XGBoost plugin on a random feature matrix.

The matrix is random (41 Gaussian features, a weak linear signal in three of them, labels spanning
15 one-minute bars); it measures training cost only, not model quality. The pipeline is the one
``lbml.research.training.train`` runs: purged walk-forward (5 folds, embargo 1%), early stopping on a
purged block inside each training fold, then the final fit with early stopping. Baseline (same
run): one plain XGBoost fit on all rows with the same parameters, without CV or early stopping.
"""

import time

import numpy as np
import pandas as pd

SIZES = {"smoke": 50_000, "full": 500_000}
N_FEATURES = 41
HORIZON_BARS = 15
TARGET_SECONDS = 300.0  # "within a few minutes on 2 cores"


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float64)
    logit = 0.05 * X[:, 0] - 0.04 * X[:, 1] + 0.03 * X[:, 2]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
    t0 = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    return X, y, t0, t0 + pd.Timedelta(minutes=HORIZON_BARS)


def run(size: str) -> list[dict]:
    from lbml.research.validation import cross_val_predict_purged, early_stopping_block, purged_walk_forward
    from plugins.model_xgboost import XGBoostModel

    n = SIZES[size]
    X, y, t0, t1 = _data(n)
    params = {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05, "n_jobs": 2, "random_state": 0}
    embargo = pd.Timedelta(minutes=int(np.ceil(0.01 * n)))

    cpu_started = time.process_time()
    started = time.perf_counter()
    splits = purged_walk_forward(t0, t1, n_splits=5, embargo=embargo)
    oof = cross_val_predict_purged(lambda: XGBoostModel(**params), X, y, t0, t1, splits, embargo=embargo)
    cv_seconds = time.perf_counter() - started
    fit, val = early_stopping_block(np.arange(n), t0.asi8, t1.asi8, 0.15, int(embargo.value))
    XGBoostModel(**params).fit(X[fit], y[fit], eval_set=(X[val], y[val]))
    total = time.perf_counter() - started
    total_cpu = time.process_time() - cpu_started

    cpu_started = time.process_time()
    started = time.perf_counter()
    XGBoostModel(**(params | {"early_stopping_rounds": None})).fit(X, y)
    baseline = time.perf_counter() - started
    baseline_cpu = time.process_time() - cpu_started

    note = (f"random {n:,} x {N_FEATURES} matrix; 5 purged walk-forward folds + final fit, XGBoost hist "
            f"300 rounds depth 4 with early stopping, 2 threads; {int(oof.tested.sum()):,} OOF predictions")
    return [
        {"name": f"training_purged_cv_plus_final_fit_{size}", "value": round(total, 2), "unit": "s",
         "baseline": round(baseline, 2), "ratio": round(total / baseline, 2),
         "target": f"< {TARGET_SECONDS:.0f} s" if size == "full" else None,
         "met": bool(total < TARGET_SECONDS) if size == "full" else None, "note": note},
        {"name": f"training_purged_cv_plus_final_fit_cpu_{size}", "value": round(total_cpu, 2), "unit": "cpu-s",
         "baseline": round(baseline_cpu, 2), "ratio": round(total_cpu / baseline_cpu, 2), "target": None, "met": None,
         "note": "process CPU time (both threads), less sensitive to other load on a shared machine"},
        {"name": f"training_purged_cv_only_{size}", "value": round(cv_seconds, 2), "unit": "s",
         "baseline": round(baseline, 2), "ratio": round(cv_seconds / baseline, 2), "target": None, "met": None,
         "note": "the five CV fits alone (baseline: one plain fit on all rows, no early stopping)"},
    ]


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "smoke"), indent=2))
