"""CLI paths of the training issue: OOS statistics in metrics.json, --allow-in-sample stamping,
tamper refusal, search + trial registry + PBO report."""

import json
from pathlib import Path

import numpy as np
import pytest

from lbml.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
#: The CPCV test's own feature set (a short warm-up): a 3-day market cannot feed the default
#: scenario's 24-hour lags, whose 1,440 warm-up bars eat most of the 1.8-day training window and
#: leave a 4-group CPCV split with ~40 purged training samples. What the test checks (CPCV paths,
#: stacking, uniqueness weights) does not depend on the feature set.
CPCV_FEATURES = [{"plugin": "core"}]
STAT_KEYS = ("oos_auc", "oos_logloss", "brier", "ece", "ic", "psr", "dsr", "sharpe_ci_low", "sharpe_ci_high", "n_trials")


def _small(tmp_path: Path, seed: int = 7, **train) -> Path:
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "small"
    raw["data"]["days"] = 3
    raw["data"]["seed"] = seed
    raw["model"]["params"] = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1, "n_jobs": 1}
    raw["validation"] = {"n_splits": 3, "bootstrap_reps": 100}
    raw["report"] = {"tearsheet": False}
    raw["split"].update(train)
    path = tmp_path / "small.toml"
    path.write_text(parse_scenario(raw).to_toml())
    return path


class _Result:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.fixture
def lbml(monkeypatch, capsys, tmp_path):
    """Run the CLI in-process (same code path as the console script, without re-importing)."""
    from lbml.cli import main

    monkeypatch.setenv("LBML_PATHS__RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LBML_PATHS__MODELS_DIR", str(tmp_path / "models"))

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return _Result(code, captured.out, captured.err)

    return run


@pytest.mark.slow
def test_in_sample_backtest_is_refused_then_stamped_and_tampering_refused(tmp_path, lbml):
    # Seed 8: with seed 7 the last 10% of this 3-day market is a trend the small model cannot rank,
    # and training rightly refuses the constant model (lbml.models.degenerate).
    late = _small(tmp_path, seed=8, train_fraction=0.9)
    scenario = tmp_path / "normal.toml"
    raw = load_scenario(late).to_dict()
    raw["split"]["train_fraction"] = 0.5
    scenario.write_text(parse_scenario(raw).to_toml())

    proc = lbml("train", late, "--out", tmp_path / "late-model")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "late-model" / "manifest.json").read_text())
    assert manifest["label_spec"]["kind"] == "fixed_horizon" and manifest["calibration"]["method"] in ("sigmoid", "isotonic")
    assert "calibration.json" in manifest["files"] and manifest["libraries"]["skops"] != "unknown"
    assert all(k in manifest["metrics"] for k in STAT_KEYS)

    refused = lbml("backtest", scenario, "--model", tmp_path / "late-model", "--out", tmp_path / "refused")
    assert refused.returncode == 2 and "inside the backtest window" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()

    out = tmp_path / "insample"
    ok = lbml("backtest", scenario, "--model", tmp_path / "late-model", "--out", out, "--allow-in-sample")
    assert ok.returncode == 0, ok.stderr
    assert "IN-SAMPLE" in ok.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["in_sample"] is True and metrics["report_stamp"] == "IN-SAMPLE"
    assert (out / "IN-SAMPLE").is_file()
    assert all(metrics[k] is not None for k in STAT_KEYS)
    assert (out / "reliability.png").stat().st_size > 1000
    assert (out / "feature_importance.png").is_file() and (out / "feature_importance.csv").is_file()

    cal = tmp_path / "late-model" / "calibration.json"
    cal.write_text(cal.read_text().replace('"method"', '"method" ', 1))
    tampered = lbml("backtest", scenario, "--model", tmp_path / "late-model", "--allow-in-sample",
                     "--out", tmp_path / "t")
    assert tampered.returncode == 2 and "calibration.json: SHA-256 does not match" in tampered.stderr
    assert "Traceback" not in tampered.stderr and not (tmp_path / "t").exists()


@pytest.mark.slow
def test_search_registers_every_trial_and_pbo_reads_them(tmp_path, lbml):
    scenario = _small(tmp_path)
    storage = tmp_path / "study.sqlite"
    result = lbml("search", scenario, "--trials", "3", "--storage", storage, "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "the study now holds 3 distinct configurations" in result.stdout
    from lbml.research.trials import TrialRegistry

    registry = TrialRegistry(storage)
    trials = registry.configurations(registry.study_key("small"))
    registry.close()
    assert len(trials) == 3 and len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    completed = [t for t in trials if t.grid_hash != "pruned"]
    assert all(len(t.returns) == len(completed[0].returns) > 100 for t in completed)
    # N when each was trained: four EV margins per completed configuration so far, one per pruned one
    n_before = np.cumsum([0] + [4 if t in completed else 1 for t in trials])
    assert all(t.metrics["n_trials"] == n_before[i] + 4 for i, t in enumerate(trials) if t in completed)
    if len(completed) >= 2:
        pbo = lbml("report", "pbo", "small", "--storage", storage, "--blocks", "4")
        assert pbo.returncode == 0, pbo.stderr
        assert "PBO = " in pbo.stdout
    missing = lbml("report", "pbo", "nosuchstudy", "--storage", storage)
    assert missing.returncode == 2 and "no trials" in missing.stderr


@pytest.mark.slow
def test_cpcv_training_of_a_stacking_ensemble_with_uniqueness_weights(tmp_path, registry):
    from lbml.models.artifact import load_artifact
    from lbml.research.training import scenario_pipeline
    from lbml.workflows.prepare import prepare, train_model

    raw = load_scenario(_small(tmp_path)).to_dict()
    raw["labels"] = {"kind": "triple_barrier", "horizon_bars": 20, "vol_estimator": "yang_zhang", "vol_window": 60}
    raw["features"] = {"plugins": CPCV_FEATURES}
    raw["model"] = {"plugin": "ensemble", "params": {
        "method": "stacking", "stacking_folds": 3,
        "members": [{"plugin": "logistic"}, {"plugin": "xgboost", "params": {"n_estimators": 30, "n_jobs": 1}}]}}
    raw["validation"] = {"method": "cpcv", "n_groups": 4, "n_test_groups": 2, "sample_weights": "uniqueness",
                         "bootstrap_reps": 50}
    scenario = parse_scenario(raw)
    prepared = prepare(scenario, registry)
    result = train_model(prepared, registry, tmp_path / "model")
    m = result.metrics
    assert m["validation_method"] == "cpcv" and m["n_cv_splits"] == 6 and m["n_cv_paths"] == 3
    assert m["cpcv_path_sharpe_p5"] <= m["cpcv_path_sharpe_median"]
    assert 0.0 <= m["cpcv_path_prob_sharpe_below_0"] <= 1.0
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    loaded = load_artifact(tmp_path / "model", registry, pipeline.schema())
    assert loaded.manifest["label_spec"]["kind"] == "triple_barrier"
    assert loaded.manifest["model_plugin"] == "ensemble" and "member_0/model.skops" in loaded.manifest["files"]
    oof = (tmp_path / "model" / "reports" / "oof_predictions.csv").read_text().splitlines()
    assert len(oof) > 500


@pytest.mark.slow
def test_training_reads_nothing_after_the_training_window(tmp_path, registry):
    from dataclasses import replace

    import numpy as np

    from lbml.data.frames import MarketData, bars_from_trades
    from lbml.models.artifact import load_artifact
    from lbml.workflows.prepare import Prepared, prepare, train_model

    raw = load_scenario(_small(tmp_path)).to_dict()
    raw["labels"] = {"kind": "triple_barrier", "horizon_bars": 15, "vol_estimator": "garman_klass", "vol_window": 30}
    raw["model"]["params"]["n_estimators"] = 20
    # no calibration: on 3 days the calibrator maps the model to the base rate, which training refuses
    raw["validation"] = {"n_splits": 3, "bootstrap_reps": 50, "calibration": "none"}
    scenario = parse_scenario(raw)
    prepared = prepare(scenario, registry)
    cut = prepared.split.train_end
    perturbed = {}
    for symbol, data in prepared.market.instruments.items():
        trades = data.trades.copy()
        after = trades.index > cut
        trades.loc[after, "price"] = np.round(trades.loc[after, "price"] * 1.07, 2)
        perturbed[symbol] = replace(data, trades=trades, bars=bars_from_trades(trades))
    other = Prepared(scenario, MarketData(perturbed, prepared.market.funding, prepared.market.bar_minutes), prepared.split)
    a = train_model(prepared, registry, tmp_path / "a")
    b = train_model(other, registry, tmp_path / "b")
    assert json.dumps(a.metrics, sort_keys=True, default=str) == json.dumps(b.metrics, sort_keys=True, default=str)
    ma = load_artifact(tmp_path / "a", registry).manifest
    mb = load_artifact(tmp_path / "b", registry).manifest
    assert ma["model_id"] == mb["model_id"] and ma["data_hash"] == mb["data_hash"]
