"""Feature importance: in-sample gain and SHAP from the same trees; out-of-fold permutation importance.

Issue #16 item 7: SHAP used the trees up to ``best_iteration`` while gain summed every tree grown,
so a feature split on only in trees early stopping discarded had gain but zero SHAP. The gain is
recomputed here from the tree dump (``trees_to_dataframe``), and the out-of-fold permutation
importance from the split models and a hand-written log loss.
"""

import numpy as np
import pandas as pd
import pytest

from lbml.research.importance import (
    feature_importance,
    fold_permutation_importance,
    in_sample_importance,
    out_of_fold_importance,
)
from lbml.research.validation import cross_val_predict_purged, purged_walk_forward
from plugins.model_xgboost import XGBoostModel

N_FEATURES = 6


def _data(n: int, seed: int):
    """y depends on x0 (strongly) and x1 (weakly); x2..x5 are noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES))
    y = (1.5 * X[:, 0] + 0.4 * X[:, 1] + rng.standard_normal(n) > 0).astype(int)
    return X, y


def _hand_logloss(y, p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _early_stopped_model():
    """A booster whose later trees (discarded by early stopping) split on features the kept ones never use."""
    X, y = _data(4000, 1)
    X_val, _ = _data(500, 2)
    y_val = np.random.default_rng(3).integers(0, 2, 500)  # unrelated labels: validation loss soon rises
    model = XGBoostModel(n_estimators=60, max_depth=2, learning_rate=0.3, early_stopping_rounds=25, subsample=1.0,
                         colsample_bytree=1.0, n_jobs=1)
    model.fit(X, y, eval_set=(X_val, y_val))
    return model, pd.DataFrame(X, columns=[f"x{i}" for i in range(N_FEATURES)])


def test_gain_and_shap_come_from_the_same_trees():
    model, X = _early_stopped_model()
    kept = model.best_iteration_ + 1
    trees = model.booster_.trees_to_dataframe()
    assert trees["Tree"].nunique() > kept  # early stopping discarded trees
    splits = trees[trees["Feature"] != "Leaf"]
    used_kept = splits[splits["Tree"] < kept].groupby("Feature")["Gain"].sum()
    used_all = splits.groupby("Feature")["Gain"].sum()
    # precondition that makes the test bite: a feature split on only in discarded trees
    assert set(used_all.index) - set(used_kept.index)

    table = in_sample_importance(model, X)
    want_gain = np.array([used_kept.get(f"f{i}", 0.0) for i in range(N_FEATURES)])
    np.testing.assert_allclose(table["in_sample_gain"].to_numpy(), want_gain, rtol=1e-5)
    np.testing.assert_allclose(table["in_sample_gain_share"].sum(), 1.0)
    # a feature no kept tree splits on has no gain and no SHAP; every feature with gain has SHAP
    no_gain = table["in_sample_gain"] == 0
    assert no_gain.any()
    assert (table.loc[no_gain, "in_sample_mean_abs_shap"] == 0).all()
    assert (table.loc[~no_gain, "in_sample_mean_abs_shap"] > 0).all()


def _record(store):
    def report(model, X_test, y_test):
        store.append((model, np.array(X_test), np.array(y_test)))
        return fold_permutation_importance(model, X_test, y_test, n_repeats=2, seed=7)

    return report


def test_out_of_fold_permutation_importance_equals_hand_computed_loss_differences():
    n = 3000
    X, y = _data(n, 5)
    t0 = pd.date_range("2024-01-01", periods=n, freq="1min")
    t1 = t0 + pd.Timedelta(minutes=10)
    splits = purged_walk_forward(t0, t1, 3, pd.Timedelta(minutes=30))
    seen = []
    oof = cross_val_predict_purged(
        lambda: XGBoostModel(n_estimators=80, max_depth=2, n_jobs=1), X, y, t0, t1, splits,
        embargo=pd.Timedelta(minutes=30), fold_report=_record(seen),
    )
    assert len(oof.fold_reports) == len(splits) == len(seen)
    for split, (model, X_test, y_test), report in zip(splits, seen, oof.fold_reports):
        # the split's own model, scored on its own test block only (out of fold)
        np.testing.assert_array_equal(X_test, X[split.test])
        assert report["n"] == len(split.test)
        base = _hand_logloss(y_test, model.predict_proba(X_test)[:, 1])
        assert report["base_logloss"] == pytest.approx(base, rel=1e-12)
        rng = np.random.default_rng(7)
        for r in range(2):
            perm = rng.permutation(len(y_test))
            for j in range(N_FEATURES):
                shuffled = X_test.copy()
                shuffled[:, j] = X_test[perm, j]
                want = _hand_logloss(y_test, model.predict_proba(shuffled)[:, 1]) - base
                assert report["increase"][j, r] == pytest.approx(want, rel=1e-9, abs=1e-12)

    names = [f"x{i}" for i in range(N_FEATURES)]
    table = out_of_fold_importance(oof.fold_reports, names)
    w = np.array([len(s.test) for s in splits], dtype=float)
    per_split = np.array([rep["increase"].mean(axis=1) for rep in oof.fold_reports])
    np.testing.assert_allclose(table["oos_permutation_logloss"].to_numpy(), w @ per_split / w.sum(), rtol=1e-12)
    imp = table["oos_permutation_logloss"]
    assert imp["x0"] > 0.1 and imp["x0"] > 3 * imp["x1"] > 0  # the signal, then the weak one
    assert imp[["x2", "x3", "x4", "x5"]].abs().max() < 0.01  # noise does not help out of sample

    full = feature_importance(model, pd.DataFrame(X, columns=names), oof.fold_reports)
    assert list(full.columns[:2]) == ["oos_permutation_logloss", "oos_permutation_se"]
    assert {"in_sample_gain", "in_sample_gain_share", "in_sample_mean_abs_shap"} <= set(full.columns)
    assert full.index[0] == "x0"


def test_a_long_test_block_is_thinned_to_evenly_spaced_rows(monkeypatch):
    import lbml.research.importance as importance

    monkeypatch.setattr(importance, "MAX_PERMUTATION_ROWS", 100)
    X, y = _data(1000, 4)
    model = XGBoostModel(n_estimators=20, max_depth=2, n_jobs=1).fit(X, y)
    report = importance.fold_permutation_importance(model, X, y, n_repeats=1, seed=3)
    rows = np.linspace(0, 999, 100).astype(int)  # 100 evenly spaced rows, first and last included
    assert report["n"] == 100
    assert report["base_logloss"] == pytest.approx(_hand_logloss(y[rows], model.predict_proba(X[rows])[:, 1]), rel=1e-12)


def test_permutation_scheme_agrees_with_sklearn_on_a_sklearn_model():
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression

    X, y = _data(4000, 9)
    model = LogisticRegression().fit(X[:2000], y[:2000])
    ours = fold_permutation_importance(model, X[2000:], y[2000:], n_repeats=20, seed=0)["increase"].mean(axis=1)
    ref = permutation_importance(model, X[2000:], y[2000:], scoring="neg_log_loss", n_repeats=20, random_state=0)
    # different random permutations: equal within the permutation noise, same ranking of the signal
    np.testing.assert_allclose(ours, ref.importances_mean, atol=0.01)
    assert np.argmax(ours) == np.argmax(ref.importances_mean) == 0


@pytest.mark.slow
def test_training_writes_both_labelled_importances(tmp_path, registry, small_scenario):
    from lbml.scenario import parse_scenario
    from lbml.workflows.prepare import prepare, train_model

    raw = small_scenario.to_dict()
    raw["validation"] = dict(raw.get("validation", {})) | {"bootstrap_reps": 50}
    raw["report"] = {"tearsheet": False}
    prepared = prepare(parse_scenario(raw), registry)
    train_model(prepared, registry, tmp_path / "m")
    table = pd.read_csv(tmp_path / "m" / "reports" / "feature_importance.csv", index_col="feature")
    assert list(table.columns) == [
        "oos_permutation_logloss", "oos_permutation_se",
        "in_sample_gain", "in_sample_gain_share", "in_sample_mean_abs_shap",
    ]
    assert table["oos_permutation_logloss"].notna().all()
    assert ((table["in_sample_gain"] > 0) == (table["in_sample_mean_abs_shap"] > 0)).all()
