"""Compiled trees (treelite + tl2cgen) give XGBoost's exact probabilities, and fall back cleanly."""

import numpy as np
import pytest

from lbml.models.compiled import CompiledModel, accelerate, compile_booster, probe_rows
from plugins.model_xgboost import XGBoostModel


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 6))
    X[rng.random(X.shape) < 0.03] = np.nan  # trees learn default directions for missing values
    y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 2]) + rng.normal(size=3000)) > 0).astype(int)
    # Early stopping: the compiled trees must be the ones predict_proba uses, not all of them.
    return XGBoostModel(n_estimators=120, max_depth=3, early_stopping_rounds=5, random_state=1).fit(
        X[:2400], y[:2400], eval_set=(X[2400:], y[2400:])
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("compiled")  # one build per module: gcc takes seconds


def test_compiled_probabilities_match_predict_proba(model, cache_dir):
    assert model.best_iteration_ + 1 < 120, "early stopping should have cut the ensemble"
    fast = accelerate(model, cache_dir)
    assert isinstance(fast, CompiledModel)
    rng = np.random.default_rng(9)
    X = rng.normal(scale=1.5, size=(2000, 6))
    X[rng.random(X.shape) < 0.05] = np.nan
    X = np.vstack([X, probe_rows(model.tree_booster(), 6, seed=4)])  # rows on and next to every threshold
    expected = model.predict_proba(X)[:, 1]
    got = np.array([fast.predict_up_one(row) for row in X])
    np.testing.assert_array_equal(got, expected)  # bit for bit, not just to 1e-6
    assert got.tolist() == [model.predict_up_one(row) for row in X]
    # Everything except the single-row path is the wrapped model's.
    np.testing.assert_array_equal(fast.predict_proba(X), model.predict_proba(X))
    assert fast.get_params() == model.get_params()


def test_compiled_library_is_cached_by_model_hash(model, cache_dir):
    first = compile_booster(model.tree_booster(), cache_dir)
    stamp = first.library.stat().st_mtime_ns
    second = compile_booster(model.tree_booster(), cache_dir)
    assert second.library == first.library and second.library.stat().st_mtime_ns == stamp
    assert [p.name for p in cache_dir.iterdir()] == [first.library.parent.name]


def test_missing_compiler_falls_back_to_the_model(model, tmp_path, caplog):
    assert accelerate(model, tmp_path, compiler="no-such-cc") is model
    assert "compiled inference unavailable" in caplog.text
    assert not any(tmp_path.iterdir())


def test_models_without_trees_are_returned_unchanged(tmp_path):
    from sklearn.linear_model import LogisticRegression

    linear = LogisticRegression()
    assert accelerate(linear, tmp_path) is linear
