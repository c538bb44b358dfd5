"""Compiled trees give XGBoost's probabilities bit for bit, across model shapes, intercepts and inputs.

Every comparison is exact (``==`` on the float32 values), never a tolerance.
"""

import ctypes
import ctypes.util
import math

import numpy as np
import pytest
import xgboost as xgb

from lbml.models.calibration import CalibratedModel, fit_calibrator
from lbml.models.compiled import CompiledModel, accelerate, compile_booster, probe_rows
from plugins.model_xgboost import XGBoostModel

N_FEATURES = 8

# (model parameters, share of positive labels -> fitted intercept, share of missing training values)
CASES = {
    "stumps": (dict(max_depth=1, n_estimators=40, learning_rate=0.3), 0.5, 0.0),
    "deep-missing-imbalanced": (dict(max_depth=6, n_estimators=25, min_child_weight=1.0), 0.12, 0.05),
    "regularised-like-default": (
        dict(max_depth=3, n_estimators=60, min_child_weight=50.0, colsample_bytree=0.5, reg_lambda=10.0),
        0.5,
        0.03,
    ),
    "high-intercept": (dict(max_depth=4, n_estimators=30, learning_rate=0.1), 0.93, 0.0),
}


def _data(seed: int, positive_rate: float, missing: float, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] - 0.3 * X[:, 3] + rng.normal(size=n)
    y = (score > np.quantile(score, 1.0 - positive_rate)).astype(int)
    X[rng.random(X.shape) < missing] = np.nan
    return X, y


def _rows(booster: xgb.Booster, seed: int) -> np.ndarray:
    """Ordinary, NaN-laced, extreme and threshold rows (float64, as the feature pipeline gives)."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(scale=s, size=(300, N_FEATURES)) for s in (0.01, 1.0, 3.0, 1e4)]
    holes = rng.normal(size=(300, N_FEATURES))
    holes[rng.random(holes.shape) < 0.3] = np.nan
    parts.append(holes)
    extremes = np.array([np.inf, -np.inf, 1e300, -1e300, 3.4e38, -3.4e38, 1e-45, 5e-324, -0.0, 0.0, np.nan])
    parts.append(rng.choice(extremes, size=(200, N_FEATURES)))
    parts.append(np.full((1, N_FEATURES), np.nan))  # every value missing: default directions only
    parts.extend(probe_rows(booster, N_FEATURES, seed=s) for s in range(3))  # on and beside every threshold
    return np.vstack(parts)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("compiled-parity")


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_trees_equal_xgboost_bit_for_bit(case, cache_dir):
    params, positive_rate, missing = CASES[case]
    X, y = _data(len(case), positive_rate, missing)
    model = XGBoostModel(early_stopping_rounds=None, random_state=3, **params).fit(X, y)
    fast = accelerate(model, cache_dir)
    assert isinstance(fast, CompiledModel), "accelerate() refused trees that should be bit-identical"
    rows = _rows(model.tree_booster(), seed=len(case) + 1)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 -> inf in float32, as XGBoost casts it
        got = [fast.predict_up_one(row) for row in rows]
        one_by_one = [model.predict_up_one(row) for row in rows]
    batch = model.predict_proba(rows)[:, 1]
    assert got == batch.tolist()  # XGBoost's batch path (array tree layout) ...
    assert got == one_by_one  # ... and its single-row path
    assert len(set(got)) > 50  # many distinct leaves and margins were exercised, not one constant


def _libm_logf():
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
    return libm.logf


def _intercept_where_folding_differs() -> np.float32:
    """A float32 intercept whose logit the C library's ``logf`` rounds differently from a correctly
    rounded log (which is what a compiler's constant folding of ``logf`` produces)."""
    logf, f = _libm_logf(), np.float32
    candidates = [f(0.5118755)] + list(np.linspace(0.05, 0.95, 4001, dtype=np.float32))
    for p in candidates:
        a = f(f(1.0) / p - f(1.0))
        if f(logf(a)) != f(math.log(float(a))):
            return p
    pytest.skip("this C library's logf is correctly rounded on every candidate intercept")


def test_intercept_margin_uses_the_c_librarys_logf(cache_dir):
    p = _intercept_where_folding_differs()
    a = np.float32(np.float32(1.0) / p - np.float32(1.0))
    X, y = _data(5, 0.5, 0.02)
    # eta = 0: every leaf is 0, so the margin is XGBoost's intercept alone.
    flat = xgb.train({"objective": "binary:logistic", "base_score": float(p), "eta": 0.0, "nthread": 1},
                     xgb.DMatrix(X, label=y), 1)
    margin = flat.inplace_predict(X[:1], predict_type="margin")[0]
    assert margin == -np.float32(_libm_logf()(a))
    assert margin != -np.float32(math.log(float(a)))  # a folded constant would be one step off

    booster = xgb.train(
        {"objective": "binary:logistic", "base_score": float(p), "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, label=y), 20,
    )
    trees = compile_booster(booster, cache_dir)
    rows = _rows(booster, seed=6)
    with np.errstate(over="ignore", invalid="ignore"):
        got = trees.predict(rows)
    assert got.tolist() == booster.inplace_predict(rows).astype(np.float64).tolist()


@pytest.mark.parametrize("base_score", [0.0, 1.0])
def test_degenerate_intercepts_are_clamped_like_xgboost(base_score, cache_dir):
    """XGBoost clamps the intercept to [1e-6, 1 - 1e-6] before taking its logit."""
    X, y = _data(7, 0.5, 0.0)
    booster = xgb.train(
        {"objective": "binary:logistic", "base_score": base_score, "max_depth": 2, "nthread": 1},
        xgb.DMatrix(X, label=y), 5,
    )
    rows = _rows(booster, seed=8)
    with np.errstate(over="ignore", invalid="ignore"):
        got = compile_booster(booster, cache_dir).predict(rows)
    assert got.tolist() == booster.inplace_predict(rows).astype(np.float64).tolist()


def test_calibrated_model_keeps_its_calibration_around_compiled_trees(cache_dir):
    X, y = _data(11, 0.5, 0.03, n=2000)
    model = XGBoostModel(n_estimators=40, max_depth=3, early_stopping_rounds=None).fit(X[:1400], y[:1400])
    calibrated = CalibratedModel(model, fit_calibrator(model, X[1400:], y[1400:], method="sigmoid"))
    fast = accelerate(calibrated, cache_dir)
    assert isinstance(fast, CalibratedModel) and isinstance(fast.base, CompiledModel)
    assert fast.calibrator is calibrated.calibrator
    rows = _rows(model.tree_booster(), seed=12)
    with np.errstate(over="ignore", invalid="ignore"):
        assert [fast.predict_up_one(r) for r in rows] == [calibrated.predict_up_one(r) for r in rows]
    np.testing.assert_array_equal(fast.predict_proba(rows), calibrated.predict_proba(rows))
