"""A scenario's model parameters are checked against the plugin when the scenario loads: a typo or a
value the estimator refuses is one line and exit 2, before any data is read."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lbml.errors import ConfigError
from lbml.models.params import check_model_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (ROOT / "scenarios" / "default.toml").read_text()


def lbml(*args):
    return subprocess.run([sys.executable, "-m", "lbml", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def scenario_with(tmp_path: Path, old: str, new: str, *, missing_data: bool = False) -> Path:
    assert old in DEFAULT
    text = DEFAULT.replace(old, new)
    if missing_data:  # data that cannot load: an error about it would mean the data was read first
        text = text.replace('source = "synthetic"', f'source = "files"\npaths = ["{tmp_path / "nope.csv"}"]')
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


def test_a_typo_in_model_params_fails_config_show_in_one_line(tmp_path):
    path = scenario_with(tmp_path, "max_depth = 3", "max_dept = 3")
    proc = lbml("config", "show", path)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr == (
        f"lbml: error: {path}: model.params.max_dept: unknown parameter of xgboost (did you mean max_depth?)\n"
    )


def test_an_invalid_value_stops_training_before_the_data_loads(tmp_path):
    path = scenario_with(tmp_path, "max_depth = 3", "max_depth = -5", missing_data=True)
    proc = lbml("train", path, "--out", tmp_path / "model")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lbml: error: {path}: model.params.max_depth: ")
    assert "must be an int in the range [0, inf). Got -5" in lines[0]
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("plugin", "params", "message"),
    [
        ("xgboost", {"subsample": 1.5}, r"model.params.subsample: .* range \(0.0, 1.0\]. Got 1.5"),
        ("xgboost", {"early_stopping_rounds": 0}, r"model.params.early_stopping_rounds: "),
        ("logistic", {"C": -1.0}, r"model.params.C: The 'C' parameter of LogisticRegression"),
        ("random_forest", {"max_features": "sqr"}, r"model.params.max_features: .*Got 'sqr'"),
        ("linear_svm", {"n_folds": 1}, r"model.params.n_folds: "),
        ("ensemble", {"method": "stack"}, r"model.params.method: expected weighted, majority or stacking"),
        ("ensemble", {"members": [{"plugin": "xgbost"}]}, r"model.params.members\[0\].plugin: unknown model plugin 'xgbost'"),
        ("ensemble", {"members": [{"plugin": "logistic"}, {"plugin": "xgboost", "params": {"max_dept": 2}}]},
         r"model.params.members\[1\].params.max_dept: unknown parameter of xgboost \(did you mean max_depth\?\)"),
        ("ensemble", {"members": [{"plugin": "logistic", "params": {"C": 0}}]}, r"model.params.members\[0\].params.C: "),
        ("nosuch", {}, r"model.plugin: unknown model plugin 'nosuch'"),
    ],
)
def test_each_plugin_refuses_bad_parameters_by_name(registry, plugin, params, message):
    with pytest.raises(ConfigError, match=rf"^scenarios/x.toml: {message}"):
        check_model_config(plugin, params, registry, "scenarios/x.toml")


def test_every_shipped_scenario_passes_the_check(registry):
    from lbml.scenario import load_scenario

    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        scenario = load_scenario(path)
        check_model_config(scenario.model.plugin, scenario.model.params, registry, str(path))


def test_a_model_with_constant_output_is_refused_not_deployed(small_scenario, tmp_path, capsys):
    # Trees that may not split (min_child_weight beyond the sample count) predict one number for
    # every bar, as the stacking ensemble once shipped p = 0.478 everywhere.
    from lbml.cli import main

    params = dict(small_scenario.model.params) | {"min_child_weight": 1e9}
    scenario = small_scenario.model_copy(update={"model": small_scenario.model.model_copy(update={"params": params})})
    path = tmp_path / "constant.toml"
    path.write_text(scenario.to_toml())
    capsys.readouterr()
    code = main(["train", str(path), "--out", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1
    assert re.fullmatch(r"lbml: error: model xgboost is degenerate: p = 0\.\d{4} for all \d+ held-out predictions "
                        r"\(no signal\); the model was not saved\n", err)
    assert not (tmp_path / "model").exists()


def test_constant_predictions_are_told_apart_from_varying_ones():
    from lbml.errors import DataError
    from lbml.models.degenerate import require_varying_output

    require_varying_output("m", {"held-out": np.array([0.4, 0.41, np.nan]), "out-of-fold": np.array([np.nan, 0.5])})
    with pytest.raises(DataError, match=r"model m is degenerate: p = 0\.4780 for all 3 out-of-fold predictions"):
        require_varying_output("m", {"held-out": np.array([0.3, 0.7]), "out-of-fold": np.array([0.478, np.nan, 0.478, 0.478])})
