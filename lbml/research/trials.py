"""The trial registry: every evaluated configuration, so statistics can count what was tried.

A *trial* is one configuration evaluated on one dataset at one EV margin:

- the **configuration hash** covers the scenario minus its cosmetic fields (name, description) with
  the model parameters actually used (:func:`configuration_hash`);
- the **dataset hash** is the hash of the training bars actually used (``training_data_hash``);
- a **study** is keyed by (study name, dataset hash) (:class:`StudyKey`): runs of one scenario on
  different data files are never pooled.

Two tables. ``lbml_configurations`` holds one row per (study, dataset hash, configuration hash): the
model parameters, the out-of-sample summary metrics and the out-of-sample return series of the
chosen margin on the labelled-sample grid (float64 bytes; never pickle), for PBO. Re-running an
identical configuration on the same dataset updates that row (``runs`` counts the runs) and adds no
trial. ``lbml_margin_trials`` holds one out-of-fold trade Sharpe ratio per (configuration, EV
margin), so N and the cross-trial variance of the deflated Sharpe ratio count the same trials
(:func:`trial_evidence`). A configuration stopped early by the search (``grid_hash == PRUNED``) has no
Sharpe ratio; it counts once in N and is left out of V and PBO.

Schema migration: a registry written by the first lbml registry (table ``lbml_trials``: one row per
run, no dataset hash, one Sharpe per run whatever the number of margins) is refused with a one-line
error. Its rows cannot be migrated honestly: the dataset and the per-margin Sharpe ratios were never
stored, so neither the study key nor N and V could be rebuilt.

Any SQLAlchemy database URL works (``sqlite:///path`` or ``postgresql://...``, which is read as
``postgresql+psycopg://``: psycopg 3 is the installed driver) so several machines can share one
registry. Schemas are created under a lock (:func:`schema_lock`: a file lock for a SQLite file, a
PostgreSQL advisory lock on a server), so workers starting together on a new database do not race.
"""

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from lbml.errors import ConfigError, StorageError, is_no_space
from lbml.scenario import Scenario

PRUNED = "pruned"  # grid_hash of a configuration stopped early: counted once in N, left out of V and PBO
#: Fewest Sharpe ratios whose sample variance may set V: the relative standard error of a variance
#: from n normal draws is √(2/(n−1)), above 50% below 8 (and one configuration's four margins are
#: far from independent). Below it the DSR falls back to the null sampling variance 1/(T − 1).
MIN_SHARPES_FOR_VARIANCE = 8
_OLD_TABLE = "lbml_trials"
_METADATA = sa.MetaData()
CONFIGURATIONS = sa.Table(
    "lbml_configurations",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
    sa.Column("study", sa.String(200), nullable=False),
    sa.Column("dataset_hash", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("runs", sa.Integer, nullable=False),
    sa.Column("scenario", sa.String(200), nullable=False),
    sa.Column("model_plugin", sa.String(100), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("n_returns", sa.Integer, nullable=False),
    sa.Column("grid_hash", sa.String(64), nullable=False),
    sa.Column("returns", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("study", "dataset_hash", "config_hash", name="uq_lbml_configuration"),
)
MARGIN_TRIALS = sa.Table(
    "lbml_margin_trials",
    _METADATA,
    sa.Column("configuration_id", sa.Integer, sa.ForeignKey("lbml_configurations.id"), primary_key=True),
    sa.Column("margin", sa.Float, primary_key=True),
    sa.Column("sharpe", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class StudyKey:
    """What trials are pooled over: one study name on one dataset."""

    study: str
    dataset_hash: str


@dataclass(frozen=True)
class Configuration:
    id: int
    study: str
    dataset_hash: str
    config_hash: str
    runs: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    margin_sharpes: dict[float, float]
    grid_hash: str
    returns: np.ndarray


@dataclass(frozen=True)
class TrialEvidence:
    """What the deflated Sharpe ratio needs from a study.

    ``n_trials`` counts every (configuration, margin) trial plus each pruned configuration once;
    ``sharpes`` are the trials' Sharpe ratios in registration order and ``variance`` their
    cross-trial variance (0.0 while too few to estimate it), never decreasing as the study grows.
    """

    n_trials: int
    variance: float
    sharpes: np.ndarray


def configuration_hash(scenario: Scenario, model_params: Mapping[str, Any] | None = None) -> str:
    """Hash of what a run did: the scenario without name, description and paper settings, with the model
    parameters actually used (``model_params``, else the scenario's)."""
    content = scenario.to_dict()
    content.pop("name", None)
    content.pop("description", None)
    content.pop("paper", None)  # how a paper session is run changes no trial
    if model_params is not None:
        content["model"] = dict(content.get("model", {})) | {"params": dict(model_params)}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def study_evidence(blocks: Sequence[Sequence[float] | None]) -> TrialEvidence:
    """N and V of a study from its configurations' margin Sharpe ratios in registration order.

    ``None`` is a pruned configuration (one trial, no Sharpe). A non-finite Sharpe (a margin that
    traded fewer than twice) is 0, the Sharpe of a flat series. V is the largest sample variance of
    the Sharpe ratios of the first k configurations over all k with at least
    ``MIN_SHARPES_FOR_VARIANCE`` Sharpe ratios (0.0 before that: the DSR then uses the null sampling
    variance). One more trial near the mean narrows the sample variance but does not make the
    dispersion already seen untrue, so adding a trial never lowers V, and (N growing) never raises
    the DSR.
    """
    sharpes: list[float] = []
    n_trials, variance = 0, 0.0
    for block in blocks:
        if block is None:
            n_trials += 1
            continue
        sharpes.extend(float(s) if np.isfinite(s) else 0.0 for s in block)
        n_trials += len(block)
        if len(sharpes) >= MIN_SHARPES_FOR_VARIANCE:
            variance = max(variance, float(np.var(sharpes, ddof=1)))
    return TrialEvidence(n_trials, variance, np.array(sharpes, dtype=np.float64))


def trial_evidence(
    trials: "TrialRegistry | None",
    study_key: StudyKey,
    config_hash: str,
    margin_sharpes: Mapping[float, float],
) -> TrialEvidence:
    """N and V for the DSR of configuration ``config_hash`` with these margin Sharpe ratios.

    The study's registered configurations count in registration order, with this configuration's
    margins in place of its earlier run (a re-run adds no trial) or appended (a new one).
    """
    this = [margin_sharpes[m] for m in sorted(margin_sharpes)]
    blocks: list[Sequence[float] | None] = []
    for config in trials.configurations(study_key) if trials is not None else []:
        if config.config_hash != config_hash:
            blocks.append(None if config.grid_hash == PRUNED else list(config.margin_sharpes.values()))
        else:
            blocks.append(this)
            this = []
    if this:
        blocks.append(this)
    return study_evidence(blocks)


#: Key of the PostgreSQL advisory lock held while schemas (lbml's, Optuna's) are created.
SCHEMA_LOCK_KEY = 0x6C626D6C  # "lbml"


def database_url(target: str | Path) -> str:
    """Accept a database URL or a file path (→ SQLite); ``postgresql://`` uses psycopg 3."""
    text = str(target)
    for plain in ("postgresql://", "postgres://"):
        if text.startswith(plain):
            return "postgresql+psycopg://" + text[len(plain):]
    if "://" in text:
        return text
    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(text).resolve()}"


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock while a database's schema (and an Optuna study) is created.

    Two workers opening a new database at once would otherwise both create the tables, and one
    fails (``table already exists``; Optuna's ``UNIQUE constraint failed: alembic_version``; on
    PostgreSQL a duplicate key in ``pg_type``). A SQLite file is locked through ``<file>.lock``; a
    PostgreSQL server through a session advisory lock (``pg_advisory_lock``), which the server
    releases by itself if the holder dies. Other databases are not locked.
    """
    if url.startswith("postgresql"):
        with _advisory_lock(url):
            yield
        return
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        yield
        return
    import fcntl

    with open(url[len(prefix):] + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


class TrialRegistry:
    """Store of evaluated configurations and their margin trials."""

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        try:
            self._engine = sa.create_engine(self.url)
            with schema_lock(self.url):
                if sa.inspect(self._engine).has_table(_OLD_TABLE):
                    raise ConfigError(
                        f"trial registry {target}: written by an older lbml (one row per run, without dataset "
                        "hash or per-margin Sharpe ratios) and cannot be counted honestly; move it aside and rerun"
                    )
                _METADATA.create_all(self._engine)
        except (sa.exc.ArgumentError, sa.exc.OperationalError, ImportError) as exc:
            error = StorageError if is_no_space(exc) else ConfigError
            raise error(f"trial registry {target}: cannot open ({str(exc).splitlines()[0]})") from None

    def record(
        self,
        *,
        key: StudyKey,
        config_hash: str,
        scenario: str,
        model_plugin: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        margin_sharpes: Mapping[float, float] | None,
        grid_hash: str,
        returns: np.ndarray,
    ) -> int:
        """Record one run of a configuration (a re-run replaces its row's results); return the row id.

        ``margin_sharpes`` is None for a pruned run, which never replaces a completed run's results.
        """
        now = datetime.now(timezone.utc).isoformat()
        values = {
            "updated": now,
            "scenario": scenario,
            "model_plugin": model_plugin,
            "params": json.dumps(params, sort_keys=True, default=str),
            "metrics": json.dumps(metrics, sort_keys=True, default=_json_default),
            "n_returns": int(len(returns)),
            "grid_hash": grid_hash,
            "returns": np.ascontiguousarray(returns, dtype="<f8").tobytes(),
        }
        try:
            return self._upsert(key, config_hash, values, margin_sharpes)
        except sa.exc.IntegrityError:  # another worker inserted the same configuration first: update it
            return self._upsert(key, config_hash, values, margin_sharpes)

    def _upsert(self, key, config_hash, values, margin_sharpes) -> int:
        where = sa.and_(
            CONFIGURATIONS.c.study == key.study, CONFIGURATIONS.c.dataset_hash == key.dataset_hash,
            CONFIGURATIONS.c.config_hash == config_hash,
        )
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(CONFIGURATIONS.c.id, CONFIGURATIONS.c.grid_hash).where(where)).first()
            if row is None:
                config_id = int(conn.execute(CONFIGURATIONS.insert().values(
                    created=values["updated"], study=key.study, dataset_hash=key.dataset_hash,
                    config_hash=config_hash, runs=1, **values,
                )).inserted_primary_key[0])
            else:
                config_id = int(row.id)
                keep = margin_sharpes is None and row.grid_hash != PRUNED  # a pruned re-run of a completed one
                conn.execute(CONFIGURATIONS.update().where(CONFIGURATIONS.c.id == config_id).values(
                    runs=CONFIGURATIONS.c.runs + 1, **({} if keep else values),
                ))
                if keep:
                    return config_id
                conn.execute(MARGIN_TRIALS.delete().where(MARGIN_TRIALS.c.configuration_id == config_id))
            if margin_sharpes:
                conn.execute(MARGIN_TRIALS.insert(), [
                    {"configuration_id": config_id, "margin": float(m), "sharpe": float(s) if np.isfinite(s) else 0.0}
                    for m, s in sorted(margin_sharpes.items())
                ])
        return config_id

    def configurations(self, key: StudyKey) -> list[Configuration]:
        """The study's configurations in registration order."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(CONFIGURATIONS).where(
                CONFIGURATIONS.c.study == key.study, CONFIGURATIONS.c.dataset_hash == key.dataset_hash,
            ).order_by(CONFIGURATIONS.c.id)).all()
            margins = conn.execute(
                sa.select(MARGIN_TRIALS).where(MARGIN_TRIALS.c.configuration_id.in_([r.id for r in rows]))
                .order_by(MARGIN_TRIALS.c.configuration_id, MARGIN_TRIALS.c.margin)
            ).all()
        by_config: dict[int, dict[float, float]] = {}
        for m in margins:
            by_config.setdefault(m.configuration_id, {})[m.margin] = m.sharpe
        return [
            Configuration(
                id=r.id, study=r.study, dataset_hash=r.dataset_hash, config_hash=r.config_hash, runs=r.runs,
                params=json.loads(r.params), metrics=json.loads(r.metrics), margin_sharpes=by_config.get(r.id, {}),
                grid_hash=r.grid_hash, returns=np.frombuffer(r.returns, dtype="<f8"),
            )
            for r in rows
        ]

    def configuration(self, key: StudyKey, config_hash: str) -> Configuration | None:
        return next((c for c in self.configurations(key) if c.config_hash == config_hash), None)

    def datasets(self, study: str) -> list[str]:
        """Dataset hashes the study has trials on, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(CONFIGURATIONS.c.dataset_hash, sa.func.min(CONFIGURATIONS.c.id).label("first"))
                .where(CONFIGURATIONS.c.study == study).group_by(CONFIGURATIONS.c.dataset_hash).order_by("first")
            ).all()
        return [r.dataset_hash for r in rows]

    def study_key(self, study: str, dataset_hash: str | None = None) -> StudyKey:
        """The key of ``study`` on ``dataset_hash`` (a unique prefix is enough), or on its only dataset."""
        datasets = self.datasets(study)
        if not datasets:
            raise ConfigError(f"study {study!r}: no trials in {self.url}")
        matches = [d for d in datasets if dataset_hash is None or d.startswith(dataset_hash)]
        if len(matches) == 1:
            return StudyKey(study, matches[0])
        if not matches:
            raise ConfigError(f"study {study!r}: no trials on dataset {dataset_hash} (found {', '.join(datasets)})")
        raise ConfigError(f"study {study!r} has trials on {len(matches)} datasets ({', '.join(matches)}): pass --dataset")

    def count(self, key: StudyKey) -> int:
        """Number of distinct configurations of the study (pruned ones included)."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                CONFIGURATIONS.c.study == key.study, CONFIGURATIONS.c.dataset_hash == key.dataset_hash,
            )).scalar_one())

    def return_matrix(self, key: StudyKey) -> np.ndarray:
        """T×N matrix of the study's configurations' returns; they must share one sample grid."""
        configs = [c for c in self.configurations(key) if c.grid_hash != PRUNED]
        if len(configs) < 2:
            raise ConfigError(f"study {key.study!r}: PBO needs at least two completed trials, found {len(configs)}")
        if len({c.grid_hash for c in configs}) > 1:
            raise ConfigError(f"study {key.study!r}: trials were evaluated on different sample grids; PBO needs one")
        return np.column_stack([c.returns for c in configs])

    def close(self) -> None:
        self._engine.dispose()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
