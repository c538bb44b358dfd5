"""Model artifacts: native files + manifest, tamper and schema checks, no pickle anywhere."""

import json

import numpy as np
import pandas as pd
import pytest

from lbml.errors import ArtifactError
from lbml.features.pipeline import FeatureSchema
from lbml.models.artifact import TrainingWindow, load_artifact, save_artifact
from plugins.model_xgboost import XGBoostModel

SCHEMA = FeatureSchema(("a", "b", "c"), ({"plugin": "t", "version": "1", "params": {}},))


@pytest.fixture
def artifact(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=600) > 0).astype(int)
    model = XGBoostModel(n_estimators=40, random_state=1).fit(X[:500], y[:500], eval_set=(X[500:], y[500:]))
    path = save_artifact(
        tmp_path / "model", model=model, schema=SCHEMA, feature_state={"t": {"omega": 0.1}},
        label_spec={"kind": "fixed_horizon"},
        training_window=TrainingWindow(pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-05", tz="UTC")),
        data_hash="abc", scenario_hash="def", metrics={"validation_auc": 0.7},
    )
    return path, model, X


def test_round_trip_predicts_identically(artifact, registry):
    path, model, X = artifact
    loaded = load_artifact(path, registry, expected_schema=SCHEMA)
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))
    assert loaded.model.predict_up_one(X[0]) == pytest.approx(model.predict_proba(X[:1])[0, 1], abs=1e-7)
    assert loaded.feature_state == {"t": {"omega": 0.1}}
    manifest = loaded.manifest
    assert manifest["feature_schema"]["hash"] == SCHEMA.hash
    assert set(manifest["files"]) == {"model.ubj", "xgboost_meta.json", "feature_state.json"}
    assert manifest["libraries"]["xgboost-cpu"] != "unknown"


def test_artifact_contains_no_pickle(artifact):
    path, _, _ = artifact
    for file in path.iterdir():
        head = file.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"\x80\x05", f"{file.name} looks like a pickle"


def test_tampered_model_file_is_refused(artifact, registry):
    path, _, _ = artifact
    with open(path / "model.ubj", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match=r"model.ubj: SHA-256 does not match the manifest"):
        load_artifact(path, registry)


def test_schema_mismatch_is_refused(artifact, registry):
    path, _, _ = artifact
    other = FeatureSchema(("a", "b", "d"), SCHEMA.plugins)
    with pytest.raises(ArtifactError, match=r"feature schema .* does not match .*differing features: c, d"):
        load_artifact(path, registry, expected_schema=other)


def test_corrupt_manifest_and_missing_folder(artifact, registry, tmp_path):
    path, _, _ = artifact
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        load_artifact(path, registry)
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load_artifact(tmp_path / "nowhere", registry)


def test_xgboost_is_deterministic_with_a_seed():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 4))
    y = (X[:, 1] > 0).astype(int)
    a = XGBoostModel(n_estimators=30, random_state=3, early_stopping_rounds=None).fit(X, y)
    b = XGBoostModel(n_estimators=30, random_state=3, early_stopping_rounds=None).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert json.loads(json.dumps(a.get_params()))["random_state"] == 3


def test_output_folders_are_atomic_and_ordinary(tmp_path):
    import os
    import stat

    from lbml.atomic import atomic_folder

    final = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with atomic_folder(final) as tmp:
            (tmp / "half.csv").write_text("a,b\n")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(final) as tmp:
        (tmp / "done.csv").write_text("a,b\n")
    assert (final / "done.csv").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o777 & ~umask
