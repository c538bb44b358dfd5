"""Trials the deflated Sharpe ratio can count: one trial per (configuration, dataset, EV margin).

Re-running a configuration adds no trial, runs on other data files are another study, N and the
cross-trial variance V count the same trials, adding a trial never raises the DSR, the DSR follows
Bailey & López de Prado (2014), and Optuna workers sharing a new storage start together and draw
distinct parameters.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, strategies as st
from scipy import stats

from lbml.errors import ConfigError
from lbml.research.trials import StudyKey, TrialRegistry, configuration_hash, study_evidence, trial_evidence
from lbml.scenario import load_scenario, parse_scenario
from lbml.research.stats import deflated_sharpe_ratio, expected_max_sharpe, psr_from_moments

ROOT = Path(__file__).resolve().parents[1]
EULER_GAMMA = 0.5772156649015329


def _paper_dsr(r: np.ndarray, n_trials: int, variance: float) -> float:
    """Bailey & López de Prado (2014), eqs. 2 and 7, written out here rather than taken from lbml."""
    sr = r.mean() / r.std(ddof=1)
    skew = stats.skew(r, bias=False)
    kurt = stats.kurtosis(r, fisher=False, bias=False)
    e_max = (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials) + EULER_GAMMA * stats.norm.ppf(
        1 - 1 / (n_trials * math.e)
    )
    sr0 = math.sqrt(variance) * e_max
    z = (sr - sr0) * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def test_dsr_reproduces_the_papers_numerical_example():
    # Bailey & López de Prado (2014), section 4: N = 100, V[SR] = 1/2 annualised, SR 2.5 annualised
    # over 1,250 daily returns, skewness -3, kurtosis 10 -> SR0 = 0.1132 daily, DSR = 0.9004.
    sr0 = expected_max_sharpe(0.5 / 250, 100)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=5e-5)


@pytest.mark.parametrize("n_trials", [2, 4, 37, 1000])
def test_dsr_follows_the_paper_with_the_null_variance_as_floor(n_trials):
    r = np.random.default_rng(n_trials).standard_t(5, size=800) * 0.01 + 0.002
    v_null = 1 / (len(r) - 1)
    for variance in (3 * v_null, 40 * v_null):  # cross-trial dispersion above the floor: the paper's V
        assert deflated_sharpe_ratio(r, n_trials, variance) == pytest.approx(_paper_dsr(r, n_trials, variance), rel=1e-9)
    for variance in (0.0, None, v_null / 5):  # agreeing trials never shrink SR0 below a null trial's scatter
        assert deflated_sharpe_ratio(r, n_trials, variance) == pytest.approx(_paper_dsr(r, n_trials, v_null), rel=1e-9)


_sharpe = st.floats(-1.0, 1.0, allow_nan=False)
_block = st.one_of(st.none(), st.lists(_sharpe, min_size=1, max_size=4))  # None: a pruned configuration


@given(
    study=st.lists(_block, min_size=0, max_size=12),
    candidate=st.lists(_sharpe, min_size=1, max_size=4),
    added=_block,
    seed=st.integers(0, 2**16),
)
def test_adding_a_trial_never_raises_the_dsr(study, candidate, added, seed):
    r = np.random.default_rng(seed).normal(0.05, 1.0, size=300)
    before = study_evidence([*study, candidate])
    after = study_evidence([*study, candidate, added])
    assert after.n_trials == before.n_trials + (1 if added is None else len(added))
    assert after.variance >= before.variance
    assert deflated_sharpe_ratio(r, after.n_trials, after.variance) <= deflated_sharpe_ratio(
        r, before.n_trials, before.variance
    )


def test_n_and_v_count_every_margin_of_every_configuration():
    evidence = study_evidence([[0.1, 0.2, 0.3, 0.4], None, [0.0, -0.1, 0.05, float("-inf")]])
    sharpes = [0.1, 0.2, 0.3, 0.4, 0.0, -0.1, 0.05, 0.0]  # a margin that never traded twice: a flat series
    assert evidence.n_trials == 9  # 8 margin trials and one pruned configuration
    assert evidence.sharpes.tolist() == sharpes
    assert evidence.variance == pytest.approx(np.var(sharpes, ddof=1))
    # Too few Sharpe ratios to estimate a variance, or identical ones: 0, which the DSR floors (above).
    assert study_evidence([[0.0, 1.0, 0.5, -0.7]]).variance == 0.0
    assert study_evidence([[0.2] * 4, [0.2] * 4]).variance == 0.0


def test_a_rerun_replaces_its_row_and_leaves_n_and_v_unchanged(tmp_path):
    trials = TrialRegistry(tmp_path / "trials.sqlite")
    key, other = StudyKey("s", "data-a"), StudyKey("s", "data-b")
    margins_a = {0.0: 0.1, 0.01: 0.2, 0.02: 0.3, 0.05: 0.25}
    margins_b = {0.0: -0.2, 0.01: 0.0, 0.02: 0.05, 0.05: 0.1}

    def record(k, config, margins):
        trials.record(key=k, config_hash=config, scenario="s", model_plugin="logistic", params={},
                      metrics={"oos_logloss": 0.69}, margin_sharpes=margins, grid_hash="g", returns=np.ones(3))

    try:
        record(key, "A", margins_a)
        record(key, "B", margins_b)
        record(other, "A", {0.0: 5.0, 0.01: -5.0, 0.02: 5.0, 0.05: -5.0})  # another data file: another study
        first = trial_evidence(trials, key, "A", margins_a)
        record(key, "A", margins_a)
        again = trial_evidence(trials, key, "A", margins_a)
        assert (first.n_trials, first.variance) == (again.n_trials, again.variance) == (
            8, pytest.approx(np.var([*margins_a.values(), *margins_b.values()], ddof=1))
        )
        assert trials.count(key) == 2 and trials.configuration(key, "A").runs == 2
        assert trial_evidence(trials, key, "C", {0.0: 0.0}).n_trials == 9
        with pytest.raises(ConfigError, match="pass --dataset"):
            trials.study_key("s")
        assert trials.study_key("s", "data-b") == other
    finally:
        trials.close()


def test_the_configuration_hash_ignores_cosmetic_fields_only():
    base = load_scenario(ROOT / "scenarios" / "default.toml")
    renamed = base.model_copy(update={"name": "another", "description": "same experiment"})
    assert configuration_hash(renamed) == configuration_hash(base)
    assert configuration_hash(base, {"C": 1.0}) != configuration_hash(base, {"C": 2.0})
    assert configuration_hash(base, dict(base.model.params)) == configuration_hash(base)
    assert configuration_hash(base.with_data(seed=8)) != configuration_hash(base)


def test_a_registry_of_the_old_schema_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    from lbml.cli import main

    path = tmp_path / "trials.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE lbml_trials (id INTEGER PRIMARY KEY, study VARCHAR(200), sharpe FLOAT)"))
    engine.dispose()
    monkeypatch.setenv("LBML_PATHS__RUNS_DIR", str(tmp_path))
    assert main(["report", "pbo", "small", "--storage", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "older lbml" in err and "move it aside" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def _selfcheck_scenario(*, seed: int, edge: float, name: str = "bet", **params):
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = name
    raw["data"].update(days=4, seed=seed, edge=edge, trend_drift=0.0)
    raw["features"] = {"plugins": [{"plugin": "core"}]}
    raw["model"]["params"] = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1, "random_state": 0,
                              "n_jobs": 1} | params
    raw["validation"] = {"n_splits": 4, "bootstrap_reps": 100}
    return parse_scenario(raw)


@pytest.mark.slow
def test_reruns_and_other_data_files_do_not_move_the_dsr_and_a_new_trial_only_lowers_it(registry, tmp_path):
    # The planted-edge market of the self-checks (seed 101): a real edge, as the DSR must keep seeing it.
    from lbml.workflows.prepare import prepare, train_model

    edge = prepare(_selfcheck_scenario(seed=101, edge=0.3), registry)

    def run(prepared, folder):
        with_trials = TrialRegistry(tmp_path / folder / "trials.sqlite")
        try:
            return train_model(prepared, registry, tmp_path / folder / "model", trials=with_trials).metrics
        finally:
            with_trials.close()

    alone = run(edge, "fresh")
    run(prepare(_selfcheck_scenario(seed=201, edge=0.0), registry), "shared")  # same name, other market
    first = run(edge, "shared")
    again = run(edge, "shared")
    assert alone["n_trials"] == first["n_trials"] == again["n_trials"] == 4
    assert alone["dsr"] == first["dsr"] == again["dsr"] > 0.5

    run(prepare(_selfcheck_scenario(seed=101, edge=0.3, max_depth=2), registry), "shared")  # a new configuration
    third = run(edge, "shared")
    assert third["n_trials"] == 8 and third["dsr"] <= first["dsr"]


def _search_scenario(tmp_path: Path) -> Path:
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "race"
    raw["data"].update(days=3)
    raw["features"] = {"plugins": [{"plugin": "core"}]}
    raw["model"] = {"plugin": "logistic"}
    raw["validation"] = {"n_splits": 3, "bootstrap_reps": 50}
    raw["report"] = {"tearsheet": False}
    path = tmp_path / "race.toml"
    path.write_text(parse_scenario(raw).to_toml())
    return path


@pytest.mark.slow
def test_two_search_workers_start_together_on_a_new_storage_and_draw_distinct_parameters(tmp_path):
    import optuna

    scenario, storage = _search_scenario(tmp_path), tmp_path / "new" / "study.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBML_")}
    env |= {"PYTHONPATH": str(ROOT), "LBML_PATHS__RUNS_DIR": str(tmp_path / "runs")}
    command = [sys.executable, "-m", "lbml", "search", str(scenario), "--trials", "2", "--storage", str(storage)]
    workers = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]

    trials = TrialRegistry(storage)
    try:
        key = trials.study_key("race")
        configs = trials.configurations(key)
    finally:
        trials.close()
    study = optuna.load_study(study_name=f"race@{key.dataset_hash}", storage=f"sqlite:///{storage}")
    drawn = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(drawn) == 4 and len(set(drawn)) == 4  # the two workers did not repeat each other
    assert sorted(c.params["C"] for c in configs) == sorted(t.params["C"] for t in study.trials)
    assert len(configs) == 4 and all(c.runs == 1 for c in configs)
    completed = [c for c in configs if c.grid_hash != "pruned"]
    assert all(len(c.margin_sharpes) == 4 for c in completed)
    n_pruned = len(configs) - len(completed)
    assert max(c.metrics["n_trials"] for c in completed) <= 4 * len(completed) + n_pruned


@pytest.mark.slow
def test_a_search_that_draws_an_evaluated_configuration_again_neither_retrains_nor_counts_it(tmp_path, registry):
    from lbml.workflows.search import run_search

    scenario = load_scenario(_search_scenario(tmp_path))
    storage = tmp_path / "study.sqlite"
    result = run_search(scenario, registry, n_trials=3, storage=storage, space={"C": ("cat", (0.5,))})
    assert result.n_trials_run == 3 and result.n_trials_study == 1 and result.n_pruned == 0
    trials = TrialRegistry(storage)
    try:
        (config,) = trials.configurations(trials.study_key("race"))
    finally:
        trials.close()
    assert config.runs == 1 and config.params["C"] == 0.5 and config.metrics["n_trials"] == 4
    assert result.best_value == pytest.approx(config.metrics["oos_logloss"])
