"""The conformance test every registered model plugin must pass (run against each one found).

fit returns self; predict_proba columns follow classes_ and sum to 1; the model learns a real
signal; a seed gives identical predictions; predicting before fit is refused; save/load through the
artifact round-trips exactly; a modified file is refused; get_params/clone work; weights are used.
"""

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from lbml.errors import ArtifactError
from lbml.features.pipeline import FeatureSchema
from lbml.models.artifact import TrainingWindow, load_artifact, save_artifact
from lbml.plugins import load_registry

SCHEMA = FeatureSchema(("a", "b", "c", "d"), ({"plugin": "t", "version": "1", "params": {}},))

# Small, fast hyperparameters per built-in plugin; a third-party plugin is tested with its defaults.
SMALL_PARAMS = {
    "xgboost": {"n_estimators": 40, "max_depth": 3, "early_stopping_rounds": None, "n_jobs": 1},
    "random_forest": {"n_estimators": 30, "min_samples_leaf": 10},
    # two bars of two features per row: the planted x0, x1·x2 signal spans both bars of the sequence
    "lstm": {"window": 2, "hidden_size": 8, "max_epochs": 40, "batch_size": 64, "learning_rate": 0.01},
    "ensemble_weighted": {
        "members": [{"plugin": "logistic"}, {"plugin": "xgboost", "params": {"n_estimators": 30, "n_jobs": 1}}],
        "method": "weighted",
        "weights": [2.0, 1.0],
    },
    "ensemble_majority": {
        "members": [{"plugin": "logistic"}, {"plugin": "random_forest", "params": {"n_estimators": 20}},
                    {"plugin": "linear_svm"}],
        "method": "majority",
    },
    "ensemble_stacking": {
        "members": [{"plugin": "logistic"}, {"plugin": "random_forest", "params": {"n_estimators": 20}}],
        "method": "stacking",
        "purge_rows": 5,
    },
}

REGISTRY = load_registry()
CASES = [
    pytest.param(name, SMALL_PARAMS.get(name, {}), id=name) for name in sorted(REGISTRY.models) if name != "ensemble"
] + [pytest.param("ensemble", params, id=key) for key, params in SMALL_PARAMS.items() if key.startswith("ensemble")]


def _data(seed: int = 0, n: int = 800):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    logit = 1.5 * X[:, 0] - 1.0 * X[:, 1] * X[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _up(model, X):
    return model.predict_proba(X)[:, list(model.classes_).index(1)]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_model_plugin_conformance(name, params, tmp_path):
    cls = REGISTRY.model(name)
    X, y = _data()
    fit_X, fit_y, test_X, test_y = X[:600], y[:600], X[600:], y[600:]

    fresh = cls(**params)
    with pytest.raises(NotFittedError):
        fresh.predict_proba(test_X)
    assert fresh.get_params()  # hyperparameters only, stored by __init__
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(fresh))

    model = cls(**params)
    assert model.fit(fit_X, fit_y) is model
    assert set(model.classes_.tolist()) == {0, 1}
    proba = model.predict_proba(test_X)
    assert proba.shape == (len(test_X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert roc_auc_score(test_y, _up(model, test_X)) > 0.65  # it learned the planted signal
    assert model.predict_up_one(test_X[0]) == pytest.approx(_up(model, test_X[:1])[0], abs=1e-9)

    again = clone(model).fit(fit_X, fit_y)  # same seed → same model
    np.testing.assert_array_equal(_up(again, test_X), _up(model, test_X))

    path = save_artifact(
        tmp_path / "artifact", model=model, schema=SCHEMA, feature_state={}, label_spec={},
        training_window=TrainingWindow(pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")),
        data_hash="x", scenario_hash="y", metrics={},
    )
    loaded = load_artifact(path, REGISTRY, expected_schema=SCHEMA).model
    np.testing.assert_allclose(_up(loaded, test_X), _up(model, test_X), rtol=0, atol=1e-7)
    assert list(path.rglob("*.pkl")) == [] and list(path.rglob("*.joblib")) == []

    victim = max((p for p in path.rglob("*") if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256 does not match"):
        load_artifact(path, REGISTRY, expected_schema=SCHEMA)


@pytest.mark.parametrize(("name", "params"), CASES)
def test_model_plugin_validates_its_parameters_before_fitting(name, params):
    from lbml.errors import ConfigError

    cls = REGISTRY.model(name)
    cls.validate_params(params)  # what the conformance test fits with is valid
    with pytest.raises(ConfigError, match=r"^model.params.no_such_parameter: unknown parameter of "):
        cls.validate_params({**params, "no_such_parameter": 1})


@pytest.mark.parametrize("name", ["logistic", "random_forest", "xgboost", "lstm"])
def test_sample_weights_change_the_fit(name):
    cls = REGISTRY.model(name)
    X, y = _data(1, 600)
    w = np.where(y == 1, 5.0, 1.0)
    plain = cls(**SMALL_PARAMS.get(name, {})).fit(X, y)
    weighted = cls(**SMALL_PARAMS.get(name, {})).fit(X, y, sample_weight=w)
    assert _up(weighted, X).mean() > _up(plain, X).mean() + 0.05


def test_skops_refuses_untrusted_types(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    sio.dump(FunctionTransformer(os.getcwd), tmp_path / "model.skops")
    with pytest.raises(ArtifactError, match="refusing to load untrusted types"):
        REGISTRY.model("logistic").load(tmp_path, {})


def test_ensemble_rejects_bad_configuration():
    from lbml.errors import ConfigError

    X, y = _data()
    with pytest.raises(ConfigError, match="model.params.method"):
        REGISTRY.model("ensemble")(method="median").fit(X, y)
    with pytest.raises(ConfigError, match="model.params.weights"):
        REGISTRY.model("ensemble")(weights=[1.0]).fit(X, y)
