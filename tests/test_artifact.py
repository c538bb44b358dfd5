"""Model artifacts: native files + manifest, tamper and schema checks, no pickle anywhere."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.errors import ArtifactError
from lbml.features.pipeline import FeatureSchema
from lbml.models.artifact import TrainingWindow, load_artifact, manifest_integrity, save_artifact
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


def edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


# Every field the loader and the gates trust, plus a field the manifest did not have when saved:
# the check covers the whole manifest, not a list of known keys.
MANIFEST_EDITS = [
    pytest.param("training_window", lambda m: m["training_window"].update(end="2023-12-31T00:00:00+00:00"), id="window"),
    pytest.param("feature_schema", lambda m: m["feature_schema"].update(hash="0" * 16), id="schema"),
    pytest.param("calibration", lambda m: m.update(calibration={"method": "sigmoid", "a": 1.0, "b": 0.0}), id="calibration"),
    pytest.param("metrics", lambda m: m["metrics"].update(ev_margin=0.2), id="ev_margin"),
    pytest.param("metrics", lambda m: m["metrics"].update(psr=0.99, dsr=0.98, n_trials=1), id="gate_statistics"),
    pytest.param("model_params", lambda m: m["model_params"].update(max_depth=9), id="params"),
    pytest.param("label_spec", lambda m: m.pop("label_spec"), id="removed_field"),
    pytest.param("files", lambda m: m["files"].pop("feature_state.json"), id="unlisted_file"),
    pytest.param("payoff", lambda m: m.update(payoff={"take_profit": 0.5}), id="added_field"),
]


@pytest.mark.parametrize(("field", "edit"), MANIFEST_EDITS)
def test_any_edit_of_the_manifest_is_refused(artifact, registry, field, edit):
    path, _, _ = artifact
    edit_manifest(path, edit)
    with pytest.raises(ArtifactError, match=rf"manifest field {field} does not match its integrity digest"):
        load_artifact(path, registry)


def test_editing_a_field_and_its_own_digest_is_refused(artifact, registry):
    path, _, _ = artifact

    def edit(m):
        m["training_window"]["end"] = "2023-12-31T00:00:00+00:00"
        m["integrity"]["fields"]["training_window"] = manifest_integrity(m)["fields"]["training_window"]

    edit_manifest(path, edit)
    with pytest.raises(ArtifactError, match="manifest integrity block does not match its fields"):
        load_artifact(path, registry)


def test_a_manifest_without_its_integrity_block_or_from_the_old_format_is_refused(artifact, registry):
    path, _, _ = artifact
    edit_manifest(path, lambda m: m.pop("integrity"))
    with pytest.raises(ArtifactError, match="manifest has no integrity block"):
        load_artifact(path, registry)
    edit_manifest(path, lambda m: m.update(format_version=1))
    with pytest.raises(ArtifactError, match="unsupported artifact format 1 .*retrain the model"):
        load_artifact(path, registry)


def test_reformatting_the_manifest_without_changing_a_value_is_accepted(artifact, registry):
    path, _, _ = artifact
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(dict(reversed(list(manifest.items())))))
    assert load_artifact(path, registry).manifest == manifest


def test_an_edited_training_window_cannot_slip_past_the_in_sample_guard(registry, small_scenario, tmp_path, capsys):
    # Reported bypass: a model trained into the backtest window, its manifest's training_window.end
    # moved back before the backtest, ran and was stamped in_sample: false.
    from lbml.cli import main
    from lbml.workflows.prepare import prepare, train_model

    late = small_scenario.model_copy(update={"split": small_scenario.split.model_copy(update={"train_fraction": 0.9})})
    train_model(prepare(late, registry), registry, tmp_path / "late-model")
    test_start = prepare(small_scenario, registry).split.test_start
    moved = (test_start - pd.Timedelta(hours=1)).isoformat()
    edit_manifest(tmp_path / "late-model", lambda m: m["training_window"].update(end=moved))
    scenario_file = tmp_path / "four_days.toml"
    scenario_file.write_text(small_scenario.to_toml())
    capsys.readouterr()
    code = main(["backtest", str(scenario_file), "--model", str(tmp_path / "late-model"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "manifest field training_window does not match its integrity digest" in err
    assert not (tmp_path / "out").exists()
