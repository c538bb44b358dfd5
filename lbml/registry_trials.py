"""The trial registry: every evaluated configuration, so statistics can count what was tried.

One SQLite table (``trials``) holds, per trial: study name, scenario name and hash, model plugin
and parameters, the out-of-sample summary metrics, and the out-of-sample return series on the
labelled-sample grid (float64 bytes; never pickle). It supplies N and the trial Sharpe ratios for
the deflated Sharpe ratio, and the T×N return matrix for PBO. Any SQLAlchemy database URL works
(``sqlite:///path`` or ``postgresql://...``) so several machines can share one registry.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from lbml.errors import ConfigError

PRUNED = "pruned"  # grid_hash of a trial stopped early: counted in N, left out of PBO
_METADATA = sa.MetaData()
TRIALS = sa.Table(
    "lbml_trials",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("study", sa.String(200), nullable=False, index=True),
    sa.Column("scenario", sa.String(200), nullable=False),
    sa.Column("scenario_hash", sa.String(64), nullable=False),
    sa.Column("model_plugin", sa.String(100), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("sharpe", sa.Float, nullable=True),
    sa.Column("n_returns", sa.Integer, nullable=False),
    sa.Column("grid_hash", sa.String(64), nullable=False),
    sa.Column("returns", sa.LargeBinary, nullable=False),
)


@dataclass(frozen=True)
class Trial:
    id: int
    study: str
    scenario_hash: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    sharpe: float | None
    grid_hash: str
    returns: np.ndarray


def database_url(target: str | Path) -> str:
    """Accept a database URL or a file path (→ SQLite)."""
    text = str(target)
    if "://" in text:
        return text
    Path(text).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(text).resolve()}"


class TrialRegistry:
    """Append-only store of evaluated trials."""

    def __init__(self, target: str | Path) -> None:
        self.url = database_url(target)
        try:
            self._engine = sa.create_engine(self.url)
            _METADATA.create_all(self._engine)
        except (sa.exc.ArgumentError, sa.exc.OperationalError, ImportError) as exc:
            raise ConfigError(f"trial registry {target}: cannot open ({str(exc).splitlines()[0]})") from None

    def record(
        self,
        *,
        study: str,
        scenario: str,
        scenario_hash: str,
        model_plugin: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        sharpe: float | None,
        grid_hash: str,
        returns: np.ndarray,
    ) -> int:
        """Append one trial; return its id."""
        row = {
            "created": datetime.now(timezone.utc).isoformat(),
            "study": study,
            "scenario": scenario,
            "scenario_hash": scenario_hash,
            "model_plugin": model_plugin,
            "params": json.dumps(params, sort_keys=True, default=str),
            "metrics": json.dumps(metrics, sort_keys=True, default=_json_default),
            "sharpe": None if sharpe is None or not np.isfinite(sharpe) else float(sharpe),
            "n_returns": int(len(returns)),
            "grid_hash": grid_hash,
            "returns": np.ascontiguousarray(returns, dtype="<f8").tobytes(),
        }
        with self._engine.begin() as conn:
            return int(conn.execute(TRIALS.insert().values(**row)).inserted_primary_key[0])

    def trials(self, study: str) -> list[Trial]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(TRIALS).where(TRIALS.c.study == study).order_by(TRIALS.c.id)).all()
        return [
            Trial(
                id=r.id, study=r.study, scenario_hash=r.scenario_hash, params=json.loads(r.params),
                metrics=json.loads(r.metrics), sharpe=r.sharpe, grid_hash=r.grid_hash,
                returns=np.frombuffer(r.returns, dtype="<f8"),
            )
            for r in rows
        ]

    def count(self, study: str) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(TRIALS.c.study == study)).scalar_one())

    def sharpes(self, study: str) -> np.ndarray:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(TRIALS.c.sharpe).where(TRIALS.c.study == study)).all()
        return np.array([r[0] for r in rows if r[0] is not None], dtype=np.float64)

    def return_matrix(self, study: str) -> np.ndarray:
        """T×N matrix of the study's trial returns; trials must share one sample grid."""
        trials = self.trials(study)
        if not trials:
            raise ConfigError(f"study {study!r}: no trials in {self.url}")
        trials = [t for t in trials if t.grid_hash != PRUNED]
        if len(trials) < 2:
            raise ConfigError(f"study {study!r}: PBO needs at least two completed trials, found {len(trials)}")
        grids = {t.grid_hash for t in trials}
        if len(grids) > 1:
            raise ConfigError(f"study {study!r}: trials were evaluated on different sample grids; PBO needs one")
        return np.column_stack([t.returns for t in trials])

    def close(self) -> None:
        self._engine.dispose()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
