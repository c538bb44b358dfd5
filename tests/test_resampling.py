"""Imbalance resampling happens inside each training fold only: no synthetic row is ever evaluated."""

import json

import numpy as np
import pytest

from lbml.errors import ConfigError
from lbml.models.resampling import ResampledModel, resample
from lbml.research.training import scenario_pipeline, train, training_set
from lbml.scenario import ResamplingConfig, load_scenario
from lbml.split import compute_split
from plugins.models_sklearn import LogisticModel

from .conftest import without_calibration


def _imbalanced(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 1.0).astype(int)  # ~16 % class 1
    return X, y


def test_smote_keeps_every_real_row_in_order_and_balances_the_classes():
    X, y = _imbalanced()
    w = np.linspace(1, 2, len(y))
    X_r, y_r, w_r, kept, report = resample(X, y, w, ResamplingConfig(method="smote", random_state=1))
    assert kept is None and np.array_equal(X_r[: len(y)], X) and np.array_equal(y_r[: len(y)], y)
    assert (y_r == 1).sum() == (y_r == 0).sum() and report.n_synthetic == len(y_r) - len(y) > 0
    assert report.up_share_after == pytest.approx(0.5) and report.up_share_before == pytest.approx(y.mean())
    np.testing.assert_array_equal(w_r[: len(y)], w)
    assert np.allclose(w_r[len(y):], w[y == 1].mean())
    assert (y_r[len(y):] == 1).all()


def test_undersampling_keeps_time_order_and_weights():
    X, y = _imbalanced()
    w = np.arange(len(y), dtype=float)
    X_r, y_r, w_r, kept, report = resample(X, y, w, ResamplingConfig(method="undersample", sampling_strategy=0.5))
    assert (np.diff(kept) > 0).all() and np.array_equal(X_r, X[kept]) and np.array_equal(w_r, w[kept])
    assert (y_r == 1).sum() == (y == 1).sum() and (y_r == 0).sum() == 2 * (y == 1).sum()
    assert report.n_dropped == len(y) - len(kept)


def test_balanced_enough_data_is_left_alone_and_settings_must_be_effective():
    X, y = _imbalanced()
    _, _, _, _, report = resample(X, y, None, ResamplingConfig(method="smote", sampling_strategy=0.1))
    assert report.n_synthetic == 0 and report.n_after == len(y)
    with pytest.raises(ValueError, match="k_neighbors has no effect"):
        ResamplingConfig(method="undersample", k_neighbors=3)
    with pytest.raises(ValueError, match="sampling_strategy has no effect"):
        ResamplingConfig(sampling_strategy=0.5)


def test_smote_refuses_a_model_that_purges_on_label_times():
    from plugins.model_ensemble import EnsembleModel

    X, y = _imbalanced()
    model = ResampledModel(EnsembleModel(method="stacking"), ResamplingConfig(method="smote"))
    with pytest.raises(ConfigError, match="smote cannot be combined"):
        model.fit(X, y, t0=np.arange(len(y)), t1=np.arange(len(y)) + 5)


class RecordingLogistic(LogisticModel):
    """Logistic regression that records every row it is fitted, early-stopped and evaluated on."""

    name = "recording_logistic"
    seen: dict[str, list[np.ndarray]] = {"fit": [], "eval": [], "predict": []}

    def fit(self, X, y, *, sample_weight=None, eval_set=None):
        self.seen["fit"].append(np.array(X))
        if eval_set is not None:
            self.seen["eval"].append(np.array(eval_set[0]))
        return super().fit(X, y, sample_weight=sample_weight)

    def predict_proba(self, X):
        self.seen["predict"].append(np.array(X))
        return super().predict_proba(X)


def _rows(*arrays: np.ndarray) -> set[bytes]:
    return {row.tobytes() for a in arrays for row in np.asarray(a, dtype=np.float64)}


def test_no_synthetic_sample_reaches_validation_calibration_or_out_of_fold_evaluation(registry, tmp_path):
    base = without_calibration(load_scenario("scenarios/default.toml").with_data(days=4))
    # Parameter-free features only: every matrix a fold sees is then made of the window's real rows.
    features = base.features.model_copy(update={"plugins": tuple(p for p in base.features.plugins if p.plugin in
                                                                  ("technical", "lagged", "order_flow"))})
    model = base.model.model_copy(update={"plugin": "recording_logistic", "params": {},
                                          "resampling": ResamplingConfig(method="smote", random_state=3)})
    scenario = base.model_copy(update={"features": features, "model": model})
    registry.models["recording_logistic"] = RecordingLogistic
    for rows in RecordingLogistic.seen.values():
        rows.clear()
    from lbml.workflows.prepare import prepare

    prepared = prepare(scenario, registry)
    result = train(scenario, prepared.market, registry, prepared.split, tmp_path / "model", reports=False)

    ts = training_set(scenario, prepared.market, scenario_pipeline(scenario, prepared.market, registry), prepared.split)
    real = _rows(ts.X.to_numpy(np.float64))
    seen = RecordingLogistic.seen
    fitted = _rows(*seen["fit"])
    assert fitted - real, "SMOTE added no synthetic row to any training fold"
    assert len(seen["eval"]) >= 2 and _rows(*seen["eval"]) <= real  # early-stopping blocks: real rows only
    assert len(seen["predict"]) >= 2 and _rows(*seen["predict"]) <= real  # OOF, validation, calibration
    n_fits = len(seen["fit"])  # with resampling per split and the final fit, then the same splits without
    assert n_fits == 2 * result.metrics["n_cv_splits"] + 1

    report = result.metrics["resampling"]
    assert report["method"] == "smote" and report["folds"]["n_fits"] == result.metrics["n_cv_splits"]
    assert all(after == pytest.approx(0.5) for after in report["folds"]["up_share_after"])
    assert report["folds"]["n_synthetic"] + report["final_fit"]["n_synthetic"] >= len(fitted - real)
    assert report["final_fit"]["up_share_after"] == pytest.approx(0.5)
    assert np.isfinite(report["oos_logloss_with_resampling"]) and np.isfinite(report["oos_logloss_without_resampling"])
    assert report["oos_logloss_change"] == pytest.approx(
        report["oos_logloss_with_resampling"] - report["oos_logloss_without_resampling"])
    manifest = json.loads((result.artifact_dir / "manifest.json").read_text())
    assert manifest["model_plugin"] == "recording_logistic"  # the fitted model, not a resampling wrapper
    assert manifest["metrics"]["resampling"] == json.loads(json.dumps(report))
