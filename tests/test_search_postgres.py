"""``lbml search`` on a real PostgreSQL server (started by the test in a temp dir, stopped at the end).

Workers starting together on an empty database neither crash nor repeat each other's parameters,
and every Optuna trial lands once in the trial registry that feeds the DSR and PBO.
"""

import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from lbml.research.trials import PRUNED, TrialRegistry, database_url
from lbml.scenario import load_scenario, parse_scenario
from tests.postgres_support import postgres_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    with postgres_server() as url:
        yield url


def _new_database(server_url: str, name: str) -> str:
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _open_everything(url: str, k: int) -> int:
    from lbml.workflows.search import open_study

    trials = TrialRegistry(url)
    try:
        study = open_study(url, "race@data", seed=k)
        return study._study_id
    finally:
        trials.close()


def test_a_plain_postgresql_url_uses_the_installed_psycopg_driver():
    assert database_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


@pytest.mark.timeout(300)
def test_workers_opening_a_new_database_at_once_create_its_tables_and_study_once(server):
    url = _new_database(server, "first_start")
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        ids = list(pool.map(_open_everything, [url] * 4, range(4), timeout=240))
    assert len(set(ids)) == 1  # one study, joined by all
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM studies")).scalar_one() == 1
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"lbml_configurations", "lbml_margin_trials", "studies", "trials"} <= tables


def _search_scenario(tmp_path: Path) -> Path:
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "pg"
    raw["data"].update(days=3)
    raw["features"] = {"plugins": [{"plugin": "core"}]}
    raw["model"] = {"plugin": "logistic"}
    raw["validation"] = {"n_splits": 3, "bootstrap_reps": 50}
    raw["report"] = {"tearsheet": False}
    path = tmp_path / "pg.toml"
    path.write_text(parse_scenario(raw).to_toml())
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_share_one_postgresql_study_with_distinct_trials_counted_once(server, tmp_path):
    import optuna

    url = _new_database(server, "search")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBML_")}
    env |= {"PYTHONPATH": str(ROOT), "LBML_PATHS__RUNS_DIR": str(tmp_path / "runs"), "LBML_TRACKING__ENABLED": "false"}
    plain_url = url.replace("postgresql+psycopg://", "postgresql://")  # as a user would type it
    command = [sys.executable, "-m", "lbml", "search", str(_search_scenario(tmp_path)), "--trials", "4",
               "--workers", "2", "--storage", plain_url]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "in 2 worker(s)" in done.stdout

    trials = TrialRegistry(url)
    try:
        key = trials.study_key("pg")
        configs = trials.configurations(key)
    finally:
        trials.close()
    study = optuna.load_study(study_name=f"pg@{key.dataset_hash}", storage=url)
    drawn = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(drawn) == 4 and len(set(drawn)) == 4  # the two workers did not repeat each other
    assert {t.state for t in study.trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    # every trial once in the registry, under its own parameters
    assert sorted(c.params["C"] for c in configs) == sorted(t.params["C"] for t in study.trials)
    assert len(configs) == 4 and all(c.runs == 1 for c in configs)
    completed = [c for c in configs if c.grid_hash != PRUNED]
    assert completed and all(len(c.margin_sharpes) == 4 for c in completed)
    # the DSR's N never counts more than the trials registered (4 margins per completed configuration)
    n_pruned = len(configs) - len(completed)
    assert max(c.metrics["n_trials"] for c in completed) <= 4 * len(completed) + n_pruned
    assert f"the study now holds {len(configs)} distinct configurations" in done.stdout


def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBML_")}
    env |= {"PYTHONPATH": str(ROOT), "LBML_PATHS__RUNS_DIR": str(tmp_path / "runs"), "LBML_TRACKING__ENABLED": "false"}
    command = [sys.executable, "-m", "lbml", "search", str(_search_scenario(tmp_path)), "--trials", "1",
               "--storage", "postgresql://nobody@127.0.0.1:1/none"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "cannot open" in err
