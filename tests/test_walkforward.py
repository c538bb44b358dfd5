"""Walk-forward: periods never train on what they trade; stitched curve chains period returns."""

import json

import numpy as np
import pandas as pd
import pytest

from lbml.scenario import load_scenario, parse_scenario
from lbml.workflows.walkforward import stitch, walkforward_splits


def _scenario(**wf):
    raw = load_scenario("scenarios/default.toml").to_dict()
    raw["walkforward"] = wf
    return parse_scenario(raw)


@pytest.mark.parametrize("window", ["expanding", "sliding"])
def test_periods_are_purged_contiguous_and_follow_their_training(window):
    index = pd.date_range("2024-01-01", periods=10 * 1440, freq="1min", tz="UTC")
    scenario = _scenario(retrain_every_days=2, window=window, train_days=3)
    splits = walkforward_splits(index, scenario)
    assert len(splits) == 4  # days 3-5, 5-7, 7-9, 9-10
    gap = pd.Timedelta(minutes=scenario.split.embargo_bars)
    for a, b in zip(splits, splits[1:]):
        assert b.test_start > a.test_end - pd.Timedelta(minutes=1) and b.test_start - a.test_end <= pd.Timedelta(minutes=1)
    for s in splits:
        assert s.train_end + gap <= s.test_start
        if window == "sliding":
            assert s.train_end - s.train_start <= pd.Timedelta(days=3)
        else:
            assert s.train_start == index[0]


def test_stitch_chains_period_returns():
    i1 = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    i2 = pd.date_range("2024-01-02", periods=3, freq="1h", tz="UTC")
    c1 = pd.DataFrame({"equity": [100.0, 110.0, 120.0], "close": [1.0, 1.0, 1.0]}, index=i1)
    c2 = pd.DataFrame({"equity": [100.0, 90.0, 50.0], "close": [1.0, 1.0, 1.0]}, index=i2)
    out = stitch([c1, c2], 1000.0)
    np.testing.assert_allclose(out["equity"], [1000, 1100, 1200, 1200, 1080, 600])


@pytest.mark.slow
def test_walkforward_cli_writes_one_stitched_run(tmp_path, capsys, monkeypatch):
    from lbml.cli import main

    raw = load_scenario("scenarios/default.toml").to_dict()
    raw["name"] = "wf"
    raw["data"]["days"] = 3
    raw["model"]["params"] = {"n_estimators": 30, "max_depth": 3, "n_jobs": 1}
    raw["validation"] = {"n_splits": 3, "bootstrap_reps": 50}
    raw["report"] = {"tearsheet": False}
    path = tmp_path / "wf.toml"
    path.write_text(parse_scenario(raw).to_toml())
    out = tmp_path / "run"
    code = main(["walkforward", str(path), "--every-days", "1", "--train-days", "2", "--window", "sliding", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    periods = json.loads((out / "walkforward.json").read_text())["periods"]
    assert metrics["n_periods"] == len(periods) == 1 and metrics["in_sample"] is False
    assert all(pd.Timestamp(p["train_end"]) < pd.Timestamp(p["test_start"]) for p in periods)
    equity = pd.read_csv(out / "equity.csv", index_col=0, parse_dates=True)
    assert equity["equity"].iloc[-1] == pytest.approx(metrics["final_equity"])
    assert metrics["max_reconciliation_error"] < 1e-6 * metrics["initial_equity"]
    assert (out / "models" / "period_000" / "manifest.json").is_file()
