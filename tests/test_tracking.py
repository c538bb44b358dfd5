"""Runs tracked in MLflow: a small train and backtest read back from the store with ``MlflowClient``."""

import json
import subprocess
from pathlib import Path

import pytest

from lbml.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]


def _scenario(tmp_path: Path) -> Path:
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "tracked"
    raw["data"]["days"] = 3
    raw["features"] = {"plugins": [{"plugin": "core"}]}
    raw["model"]["params"] = {"n_estimators": 30, "max_depth": 3, "n_jobs": 1}
    raw["validation"] = {"n_splits": 3, "bootstrap_reps": 50}
    raw["report"] = {"tearsheet": False}
    path = tmp_path / "tracked.toml"
    path.write_text(parse_scenario(raw).to_toml())
    return path


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_and_backtest_are_logged_with_code_version_data_hash_and_run_folder(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from lbml.cli import main

    runs = tmp_path / "runs"
    monkeypatch.setenv("LBML_PATHS__RUNS_DIR", str(runs))
    scenario = _scenario(tmp_path)
    assert main(["train", str(scenario), "--out", str(tmp_path / "model")]) == 0
    assert main(["backtest", str(scenario), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.count("tracked: MLflow run") == 2

    client = MlflowClient(tracking_uri=f"sqlite:///{(runs / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("lbml")
    found = {r.data.tags["lbml.kind"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(found) == {"train", "backtest"}
    sha, dirty = _git("rev-parse", "HEAD").strip(), bool(_git("status", "--porcelain", "--untracked-files=no").strip())

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    backtest = found["backtest"]
    assert backtest.info.status == "FINISHED"
    assert backtest.data.tags["lbml.git_sha"] == sha and backtest.data.tags["lbml.git_dirty"] == str(dirty).lower()
    assert backtest.data.tags["lbml.data_hash"] == metrics["data_hash"]
    assert backtest.data.tags["lbml.run_folder"] == str((tmp_path / "run").resolve())
    assert backtest.data.params["model.plugin"] == "xgboost" and backtest.data.params["model.params.max_depth"] == "3"
    for key in ("total_return", "final_equity", "n_trades", "n_trials"):
        assert backtest.data.metrics[key] == pytest.approx(float(metrics[key]), rel=1e-12)
    assert backtest.data.metrics["costs.total"] == pytest.approx(metrics["costs"]["total"], rel=1e-12)
    for key in ("psr", "dsr"):  # deflated over the trial count logged next to them
        if metrics[key] is not None:
            assert backtest.data.metrics[key] == pytest.approx(metrics[key], rel=1e-12)
    assert backtest.data.metrics["n_trials"] >= 4  # at least this configuration's EV margins
    artifacts = {a.path for a in client.list_artifacts(backtest.info.run_id)}
    assert {"metrics.json", "scenario.toml", "split.json"} <= artifacts

    train = found["train"]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert train.data.tags["lbml.data_hash"] == manifest["data_hash"]
    assert train.data.tags["lbml.run_folder"] == str((tmp_path / "model").resolve())
    assert train.data.metrics["n_trials"] == manifest["metrics"]["n_trials"]
    assert "manifest.json" in {a.path for a in client.list_artifacts(train.info.run_id)}

    # runs compare: a run folder against the MLflow run of the same backtest
    assert main(["runs", "compare", str(tmp_path / "run"), backtest.info.run_id]) == 0
    table = capsys.readouterr().out.splitlines()
    (row,) = [line for line in table if line.startswith("total_return ")]
    a, b, diff = row.split()[1:4]
    assert a == b and float(diff) == 0.0
    assert any(line.startswith("lbml.git_sha ") and sha in line for line in table)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_unreachable_tracking_store_is_reported_and_the_run_still_succeeds(tmp_path, capsys, monkeypatch, caplog):
    from lbml.cli import main

    monkeypatch.setenv("LBML_PATHS__RUNS_DIR", str(tmp_path / "runs"))
    # MLflow retries an unreachable database for ~100 s; lbml waits at most timeout_s after the run.
    monkeypatch.setenv("LBML_TRACKING__URI", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("LBML_TRACKING__TIMEOUT_S", "3")
    assert main(["train", str(_scenario(tmp_path)), "--out", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert "tracking FAILED" in out and (tmp_path / "model" / "manifest.json").is_file()
    monkeypatch.setenv("LBML_TRACKING__URI", "nosuchstore://anywhere")  # refused at once by MLflow
    assert main(["train", str(_scenario(tmp_path)), "--out", str(tmp_path / "model2")]) == 0
    assert "tracking FAILED" in capsys.readouterr().out
    assert any("experiment tracking failed" in r.getMessage() for r in caplog.records)


def test_tracking_switched_off_logs_nothing(tmp_path, monkeypatch):
    from lbml.settings import load_settings
    from lbml.workflows.tracking import TrackedRun, Tracker

    monkeypatch.setenv("LBML_TRACKING__ENABLED", "false")
    settings = load_settings()
    tracker = Tracker(settings.tracking, tmp_path).start()
    assert tracker.finish(TrackedRun("train", "x", {}, {})) == {"status": "off"}
    assert not (tmp_path / "mlflow.db").exists()


def test_runs_compare_refuses_an_unknown_run_in_one_line(tmp_path, capsys, monkeypatch):
    from lbml.cli import main

    monkeypatch.setenv("LBML_PATHS__RUNS_DIR", str(tmp_path))
    (tmp_path / "empty").mkdir()
    assert main(["runs", "compare", str(tmp_path / "empty"), "0123abcd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run folder" in err
    assert main(["runs", "compare", "no-such-run", "0123abcd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither a run folder nor an MLflow run id" in err


_CI_MARKERS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "TRAVIS", "BUILDKITE")


@pytest.mark.timeout(300)
def test_a_tracked_run_sends_no_telemetry(tmp_path):
    """Regression: MLflow's usage telemetry was on outside CI, a network call nobody asked for (and on
    a machine with a SOCKS proxy its import-time warning leaked into a command's one-line error)."""
    import socket
    import sys

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"  # every HTTP(S) call of the child lands here
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in _CI_MARKERS and k != "MLFLOW_DISABLE_TELEMETRY" and "proxy" not in k.lower()}
    env |= {"PYTHONPATH": str(ROOT), "HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}
    code = (
        "import sys, time\n"
        "from lbml.settings import load_settings\n"
        "from lbml.workflows.tracking import TrackedRun, Tracker\n"
        f"tracker = Tracker(load_settings().tracking, {str(tmp_path)!r}).start()\n"
        "outcome = tracker.finish(TrackedRun('train', 'x', {'a': 1}, {'auc': 0.5}))\n"
        "assert outcome['status'] == 'logged', outcome\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "time.sleep(2)\n"  # time for a telemetry thread to try
        "print('disabled' if is_telemetry_disabled() else 'enabled')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "disabled"
    try:
        connection, _ = listener.accept()
        connection.close()
        raise AssertionError("the tracked run made a network call")
    except TimeoutError:
        pass
    finally:
        listener.close()
