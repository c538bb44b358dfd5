"""Hyperparameter search with Optuna over purged out-of-fold performance.

Each Optuna trial trains the scenario with sampled model parameters through the same
``lbml.research.training.train`` path (purged CV, EV rule, statistics) and is recorded in the trial
registry, so the deflated Sharpe ratio of every later trial counts it. Pruned trials are recorded
too (they were tried) but carry no return series. A median pruner stops a trial whose fold log loss
is worse than the median of earlier trials at the same fold.

Storage: any SQLAlchemy URL; by default the runs folder's ``trials.sqlite`` (shared with the trial
registry), so several workers pointing at one database share one study. The Optuna study is named
``<study>@<dataset hash>``: a search on another data file is another study. Workers sharing a study
draw distinct parameters with the same ``--seed``: TPE's random state is seeded per trial from
(seed, trial number), and the storage hands out each trial number once. A configuration the study
already evaluated is not trained again: its recorded log loss is returned. A new storage is created
under a lock (a file lock for SQLite, an advisory lock on PostgreSQL; ``schema_lock``) and the study
is opened with ``load_if_exists``, so workers may start together on an empty database.

``--workers N`` (:func:`run_search_workers`) starts N worker processes (``spawn``, through
``concurrent.futures.ProcessPoolExecutor``) that share the study through its storage exactly as
workers on other machines do: each runs :func:`run_search` on its share of the trials. Optuna's
heartbeat marks a trial whose worker died as failed, so a crashed machine does not leave it running.
"""

import logging
import shutil
import warnings
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lbml.errors import ConfigError
from lbml.features.guard import LookAheadPolicy
from lbml.models.degenerate import DegenerateModelError
from lbml.plugins import PluginRegistry
from lbml.research.trials import PRUNED, StudyKey, TrialRegistry, configuration_hash, database_url, schema_lock
from lbml.scenario import Scenario

log = logging.getLogger(__name__)

#: Default search spaces per built-in model plugin: name → (kind, low, high) or ("cat", choices).
DEFAULT_SPACES: dict[str, dict[str, tuple]] = {
    "xgboost": {
        "max_depth": ("int", 2, 6),
        "learning_rate": ("log", 0.01, 0.3),
        "min_child_weight": ("log", 1.0, 50.0),
        "subsample": ("float", 0.5, 1.0),
        "colsample_bytree": ("float", 0.5, 1.0),
        "reg_lambda": ("log", 0.1, 10.0),
    },
    "logistic": {"C": ("log", 1e-3, 10.0)},
    "random_forest": {"max_depth": ("int", 2, 10), "min_samples_leaf": ("int", 10, 200)},
    "linear_svm": {"C": ("log", 1e-3, 1.0)},
}


#: Seconds between a running trial's heartbeats, and without one before it is marked failed.
HEARTBEAT_S, GRACE_S = 30, 120


@dataclass(frozen=True)
class SearchResult:
    study: str
    storage: str
    n_trials_run: int
    n_trials_study: int  # distinct configurations of the study on this dataset
    dataset_hash: str
    n_pruned: int
    best_value: float | None
    best_params: dict[str, Any]
    n_workers: int = 1
    best_attrs: dict[str, Any] = field(default_factory=dict)  # the best trial's oos_auc, dsr, psr, n_trials


def _suggest(trial, space: dict[str, tuple]) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        elif kind == "float":
            params[name] = trial.suggest_float(name, spec[1], spec[2])
        elif kind == "log":
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=True)
        elif kind == "cat":
            params[name] = trial.suggest_categorical(name, list(spec[1]))
        else:
            raise ConfigError(f"search space {name}: unknown kind {kind!r}")
    return params


def trial_seeded_sampler(seed: int, **tpe_options: Any):
    """A TPE sampler whose random state is seeded from (``seed``, trial number) at every trial.

    One ``TPESampler(seed=seed)`` per worker makes workers sharing a study draw the same random
    start-up parameters; trial numbers are unique within a study, so these seeds differ, and a
    single worker still reproduces its search from ``seed``.
    """
    import optuna

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._number: int | None = None
            self._tpe = optuna.samplers.TPESampler(seed=seed, **tpe_options)

        def _for(self, trial) -> "optuna.samplers.TPESampler":
            if trial.number != self._number:
                derived = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
                self._number, self._tpe = trial.number, optuna.samplers.TPESampler(seed=derived, **tpe_options)
            return self._tpe

        def infer_relative_search_space(self, study, trial):
            return self._for(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._for(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial) -> None:
            self._for(trial).before_trial(study, trial)

        def after_trial(self, study, trial, state, values) -> None:
            self._for(trial).after_trial(study, trial, state, values)

    return TrialSeededSampler()


def run_search(
    scenario: Scenario,
    registry: PluginRegistry,
    *,
    n_trials: int,
    storage: str | Path,
    study: str | None = None,
    seed: int = 0,
    space: dict[str, tuple] | None = None,
    look_ahead: LookAheadPolicy | None = None,
) -> SearchResult:
    """Run ``n_trials`` Optuna trials minimising the out-of-fold log loss; return the best.

    ``look_ahead`` runs the look-ahead check before the study is opened.
    """
    import optuna

    from lbml.research.training import train, training_data_hash
    from lbml.workflows.prepare import prepare

    if n_trials < 1:
        raise ConfigError("--trials must be at least 1")
    space = space if space is not None else DEFAULT_SPACES.get(scenario.model.plugin)
    if not space:
        raise ConfigError(f"model.plugin {scenario.model.plugin!r}: no search space known for this plugin")
    study_name = study or scenario.name
    url = database_url(storage)
    prepared = prepare(scenario, registry, look_ahead=look_ahead)
    trials = TrialRegistry(url)
    key = StudyKey(study_name, training_data_hash(scenario, prepared.market, prepared.split))
    try:
        opt_study = open_study(url, f"{study_name}@{key.dataset_hash}", seed)
    except Exception as exc:  # noqa: BLE001 - a bad URL or unreachable database is a user error
        trials.close()
        raise ConfigError(f"--storage {storage}: cannot open the study ({str(exc).splitlines()[0]})") from None
    work = Path(tempfile.mkdtemp(prefix="lbml-search-"))
    pruned = 0

    def objective(trial) -> float:
        nonlocal pruned
        params = dict(scenario.model.params) | _suggest(trial, space)
        config_hash = configuration_hash(scenario, params)
        done = trials.configuration(key, config_hash)
        if done is not None:  # evaluated before (this or another worker): no new trial, no retraining
            if done.grid_hash == PRUNED:
                raise optuna.TrialPruned()
            return float(done.metrics["oos_logloss"])

        def on_fold(k: int, loss: float) -> None:
            trial.report(loss, k)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = train(
                scenario, prepared.market, registry, prepared.split, work / f"trial-{trial.number}",
                trials=trials, study=study_name, model_params=params, on_fold=on_fold, reports=False,
            )
        except (optuna.TrialPruned, DegenerateModelError) as exc:  # a degenerate model is a tried, pruned trial
            pruned += 1
            trials.record(
                key=key, config_hash=config_hash, scenario=scenario.name, model_plugin=scenario.model.plugin,
                params=params, metrics={"pruned": True}, margin_sharpes=None, grid_hash=PRUNED,
                returns=np.array([]),
            )
            raise optuna.TrialPruned(str(exc)) from None
        finally:
            shutil.rmtree(work / f"trial-{trial.number}", ignore_errors=True)
        m = result.metrics
        for name in ("oos_auc", "dsr", "psr", "oos_trade_sharpe", "n_trials"):
            trial.set_user_attr(name, m.get(name))
        return float(m["oos_logloss"])

    try:
        opt_study.optimize(objective, n_trials=n_trials)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = _best(opt_study)
    result = SearchResult(
        study=study_name, storage=url, n_trials_run=n_trials, n_trials_study=trials.count(key),
        dataset_hash=key.dataset_hash,
        n_pruned=pruned, best_value=best.value if best else None, best_params=best.params if best else {},
        best_attrs=dict(best.user_attrs) if best else {},
    )
    trials.close()
    return result


def open_study(url: str, name: str, seed: int):
    """Create the Optuna study or join it; safe when several workers do so at once on a new database.

    Optuna's tables and the study row are created under :func:`schema_lock`, and ``load_if_exists``
    makes every worker after the first join the study the first one created.
    """
    import optuna

    with schema_lock(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental since 2.9
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
        )
        return optuna.create_study(
            study_name=name, storage=storage, direction="minimize", load_if_exists=True,
            sampler=trial_seeded_sampler(seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        )


def _best(opt_study):
    import optuna

    completed = [t for t in opt_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return min(completed, key=lambda t: t.value) if completed else None


def trial_shares(n_trials: int, workers: int) -> list[int]:
    """Split ``n_trials`` over ``workers`` as evenly as possible (no worker gets none)."""
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers > n_trials:
        raise ConfigError(f"--workers {workers} is more than --trials {n_trials}: a worker would have nothing to do")
    return [n_trials // workers + (1 if k < n_trials % workers else 0) for k in range(workers)]


def _search_worker(scenario: Scenario, plugins_dir: Path | None, kwargs: dict[str, Any]) -> SearchResult:
    from lbml.plugins import load_registry

    return run_search(scenario, load_registry(plugins_dir), **kwargs)


def run_search_workers(
    scenario: Scenario,
    plugins_dir: Path | None,
    *,
    workers: int,
    n_trials: int,
    storage: str | Path,
    study: str | None = None,
    seed: int = 0,
    space: dict[str, tuple] | None = None,
    look_ahead: LookAheadPolicy | None = None,
) -> SearchResult:
    """Run ``n_trials`` over ``workers`` processes on this machine sharing one study; return the study's best.

    Each process builds its own plugin registry (from ``plugins_dir``) and runs :func:`run_search` on
    its share of the trials; they coordinate only through the storage, as workers on several
    machines do. A worker's error (e.g. an unreachable database) is raised here.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import optuna

    shares = trial_shares(n_trials, workers)
    kwargs = {"storage": str(database_url(storage)), "study": study, "seed": seed, "space": space,
              "look_ahead": look_ahead}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_search_worker, scenario, plugins_dir, kwargs | {"n_trials": k}) for k in shares]
        results = [f.result() for f in futures]
    first = results[0]
    opt_study = optuna.load_study(study_name=f"{first.study}@{first.dataset_hash}", storage=first.storage)
    best = _best(opt_study)
    trials = TrialRegistry(first.storage)
    try:
        n_study = trials.count(StudyKey(first.study, first.dataset_hash))
    finally:
        trials.close()
    return SearchResult(
        study=first.study, storage=first.storage, n_trials_run=sum(r.n_trials_run for r in results),
        n_trials_study=n_study, dataset_hash=first.dataset_hash, n_pruned=sum(r.n_pruned for r in results),
        best_value=best.value if best else None, best_params=best.params if best else {}, n_workers=workers,
        best_attrs=dict(best.user_attrs) if best else {},
    )
