"""CPCV folds, walk-forward periods and the robustness grid on a real Dask LocalCluster: the results
are the serial run's, bit for bit.

The cluster has 2 worker processes (spawned, one thread each): tasks and their inputs really cross a
process boundary (pickled there and back), as they would to another machine.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.scenario import load_scenario, parse_scenario
from lbml.sweeps import DaskSweep, SerialSweep, open_sweep
from tests.conftest import without_edge_gate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dask_sweep():
    with open_sweep("local", workers=2) as sweep:
        assert isinstance(sweep, DaskSweep)
        info = sweep.client.scheduler_info()
        assert len(info["workers"]) == 2 and all(w["nthreads"] == 1 for w in info["workers"].values())
        yield sweep


def _scenario(**updates):
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "sweep"
    raw["data"]["days"] = 3
    # core features plus the GARCH layer, which is refitted inside every CV fold (lbml.research.folds)
    raw["features"] = {"plugins": [{"plugin": "core"}, {"plugin": "volatility"}]}
    raw["model"]["params"] = {"n_estimators": 40, "max_depth": 3, "n_jobs": 1, "random_state": 3}
    raw["report"] = {"tearsheet": False}
    for section, values in updates.items():
        raw[section] = raw.get(section, {}) | values
    return parse_scenario(raw)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.suffix != ".png"}  # plots: same data, renderer metadata aside


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cpcv_folds_on_dask_equal_the_serial_run(registry, tmp_path, dask_sweep):
    from lbml.workflows.prepare import prepare, train_model

    scenario = _scenario(validation={"method": "cpcv", "n_groups": 4, "n_test_groups": 2, "bootstrap_reps": 50})
    prepared = prepare(scenario, registry)
    serial = train_model(prepared, registry, tmp_path / "serial")
    spread = train_model(prepared, registry, tmp_path / "dask", sweep=dask_sweep)
    assert serial.metrics["validation_method"] == "cpcv" and serial.metrics["n_cv_splits"] == 6
    assert serial.metrics["cv_refit_features"]  # GARCH was refitted per fold inside the tasks
    assert json.dumps(serial.metrics, sort_keys=True) == json.dumps(spread.metrics, sort_keys=True)
    a, b = _files(tmp_path / "serial"), _files(tmp_path / "dask")
    assert a.keys() == b.keys() and "reports/oof_predictions.csv" in a and "reports/cv_folds.json" in a
    assert [name for name in a if a[name] != b[name]] == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_walkforward_periods_on_dask_equal_the_serial_run(registry, tmp_path, dask_sweep):
    from lbml.workflows.walkforward import run_walkforward

    scenario = _scenario(validation={"n_splits": 3, "bootstrap_reps": 50},
                         walkforward={"retrain_every_days": 0.5, "train_days": 2.0, "window": "expanding"})
    _, serial = run_walkforward(scenario, registry, tmp_path, out=tmp_path / "serial")
    _, spread = run_walkforward(scenario, registry, tmp_path, out=tmp_path / "dask", sweep=dask_sweep)
    assert serial["n_periods"] >= 2
    assert json.dumps(serial, sort_keys=True) == json.dumps(spread, sort_keys=True)
    a, b = _files(tmp_path / "serial"), _files(tmp_path / "dask")
    assert a.keys() == b.keys() and {"equity.csv", "walkforward.json", "models/period_001/manifest.json"} <= a.keys()
    assert [name for name in a if a[name] != b[name]] == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_robustness_grid_on_dask_equals_the_serial_run(registry, tmp_path, dask_sweep):
    from lbml.workflows.robustness import sensitivity_sweep
    from lbml.workflows.prepare import prepare, train_model
    from lbml.workflows.run import backtest

    scenario = without_edge_gate(_scenario(validation={"n_splits": 3, "bootstrap_reps": 50}))
    prepared = prepare(scenario, registry)
    train_model(prepared, registry, tmp_path / "model")
    _, artifact = backtest(prepared, registry, tmp_path / "model")
    serial = sensitivity_sweep(prepared, registry, artifact, 0.5, sweep=SerialSweep())
    spread = sensitivity_sweep(prepared, registry, artifact, 0.5, sweep=dask_sweep)
    assert len(serial) == 11 and serial["parameter"].iloc[0] == "base" and serial["n_trades"].sum() > 0
    pd.testing.assert_frame_equal(serial, spread, check_exact=True)
    assert np.array_equal(serial["total_return"].to_numpy(), spread["total_return"].to_numpy())


def test_a_scheduler_that_is_neither_local_nor_an_address_is_one_line_and_exit_2(tmp_path, capsys):
    from lbml.cli import main

    with pytest.raises(SystemExit) as exit_:  # refused by the argument parser, before any work
        main(["walkforward", "scenarios/default.toml", "--scheduler", "ray://nowhere", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and not (tmp_path / "x").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scheduler" in err and "ray://nowhere" in err
