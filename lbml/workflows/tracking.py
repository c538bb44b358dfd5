"""Experiment tracking in MLflow: every train, backtest, walk-forward and search run becomes an MLflow run.

A run logs the scenario's fields as parameters (flattened, ``model.params.max_depth``), the numeric
results as metrics (PSR and DSR with ``n_trials``, the trial count they were deflated over), and tags:
the code version (``lbml.git_sha``, ``lbml.git_dirty``), the data hash, the run folder
(``lbml.run_folder``) and the kind of run. The run folder's summary files (metrics, scenario,
split, tearsheet, equity plot) are copied as artifacts (``tracking.artifacts``).

Where: ``[tracking] uri`` in the settings; by default a local store in the runs folder, no server:
``sqlite:///<runs_dir>/mlflow.db`` with artifacts in ``<runs_dir>/mlruns`` (MLflow 3 keeps its plain
file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a SQLite
file is the local store it recommends). ``[tracking] enabled = false`` switches it off.

Tracking never fails a run and never fails silently: MLflow is imported and an existing store opened
on a background thread while the run computes (:meth:`Tracker.start`; a new default store is created
at the end, so a refused run leaves none), the results are logged at the end within ``timeout_s``,
and any problem is one warning line plus ``status = "failed"`` in what :meth:`Tracker.finish`
returns; the run's own result is unaffected.
"""

import logging
import math
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Run-folder files copied as artifacts with ``artifacts = "summary"``.
SUMMARY_FILES = (
    "metrics.json", "scenario.toml", "split.json", "walkforward.json", "manifest.json", "equity.png", "tearsheet.html",
)
#: MLflow's limit on a parameter value's length (characters).
MAX_PARAM_CHARS = 500


@dataclass(frozen=True)
class CodeVersion:
    sha: str
    dirty: bool | None  # None: not a git checkout

    def tags(self) -> dict[str, str]:
        return {"lbml.git_sha": self.sha, "lbml.git_dirty": "unknown" if self.dirty is None else str(self.dirty).lower()}


def code_version(source: Path | None = None) -> CodeVersion:
    """The git commit of the checkout lbml runs from, and whether tracked files differ from it."""
    folder = source or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        from lbml import __version__

        return CodeVersion(f"unknown (lbml {__version__}, not a git checkout)", None)
    return CodeVersion(sha, bool(status.strip()))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists and other values kept as they are."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Finite numbers (booleans as 0/1) among the flattened metrics: what MLflow can plot."""
    out = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def scenario_params(scenario) -> dict[str, str]:
    return {key: _param(value) for key, value in flatten(scenario.to_dict()).items()}


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


@dataclass(frozen=True)
class TrackedRun:
    """What a run logs: filled in by the command once its result is known."""

    kind: str  # train | backtest | walkforward | search
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    run_folder: Path | None = None
    data_hash: str | None = None


@dataclass
class Tracker:
    """One MLflow run's life: the store is opened in the background, results logged at the end."""

    settings: Any  # lbml.settings.TrackingSettings
    runs_dir: Path
    _client: Any = None
    _experiment_id: str | None = None
    _error: str | None = None
    _thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return self.settings.uri or f"sqlite:///{self.default_store}"

    @property
    def default_store(self) -> Path | None:
        """The SQLite file of the default store (None when ``uri`` is set)."""
        return None if self.settings.uri else (Path(self.runs_dir) / "mlflow.db").resolve()

    @property
    def artifact_root(self) -> str:
        root = self.settings.artifact_root or Path(self.runs_dir) / "mlruns"
        return Path(root).resolve().as_uri()

    def start(self) -> "Tracker":
        """Import MLflow and open the store on a background thread (nothing when tracking is off).

        A default store that does not exist yet is created only by :meth:`finish`: a run refused
        before it finishes (bad input, a leaking feature) leaves nothing in the runs folder.
        """
        if self.settings.enabled:
            self._thread = threading.Thread(target=self._prepare, name="lbml-tracking", daemon=True)
            self._thread.start()
        return self

    def _prepare(self) -> None:
        try:
            quiet_mlflow()
            import mlflow.tracking  # noqa: F401 - the slow part (about a second), off the critical path
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            self._error = _first_line(exc)
            return
        if self.default_store is None or self.default_store.is_file():
            self._open()

    def _open(self) -> None:
        try:
            if self.settings.uri is None:
                Path(self.runs_dir).mkdir(parents=True, exist_ok=True)
            quiet_mlflow()
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            experiment = client.get_experiment_by_name(self.settings.experiment)
            if experiment is None:
                try:
                    self._experiment_id = client.create_experiment(self.settings.experiment,
                                                                   artifact_location=self.artifact_root)
                except Exception:  # noqa: BLE001 - created by a concurrent run meanwhile
                    self._experiment_id = client.get_experiment_by_name(self.settings.experiment).experiment_id
            else:
                self._experiment_id = experiment.experiment_id
            self._client = client
        except Exception as exc:  # noqa: BLE001 - reported by finish(), never raised into the run
            self._error = _first_line(exc)

    def finish(self, run: TrackedRun) -> dict[str, Any]:
        """Log ``run``; return ``{"status": "logged", "run_id", "uri"}``, ``"off"`` or ``"failed"`` (with a warning)."""
        if not self.settings.enabled:
            return {"status": "off"}
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s)
            if self._thread.is_alive():
                return self._failed(f"the tracking store did not open within {self.settings.timeout_s:g} s")
        if self._client is None and self._error is None:
            self._open()  # a new default store: created now that the run has finished
        if self._error is not None:
            return self._failed(self._error)
        try:
            return {"status": "logged", "run_id": self._log(run), "uri": self.uri}
        except Exception as exc:  # noqa: BLE001 - a tracking problem must not fail the run it records
            return self._failed(_first_line(exc))

    def _log(self, run: TrackedRun) -> str:
        from mlflow.entities import Metric, Param, RunTag

        tags = {"mlflow.runName": run.name, "lbml.kind": run.kind} | code_version().tags() | run.tags
        if run.data_hash is not None:
            tags["lbml.data_hash"] = run.data_hash
        if run.run_folder is not None:
            tags["lbml.run_folder"] = str(Path(run.run_folder).resolve())
        created = self._client.create_run(self._experiment_id, tags=tags, run_name=run.name)
        run_id = created.info.run_id
        try:
            now = created.info.start_time
            params = [Param(k, v) for k, v in sorted(run.params.items())]
            metrics = [Metric(k, v, now, 0) for k, v in sorted(run.metrics.items())]
            for start in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limit is 100 params
                self._client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100])
            if run.run_folder is not None and self.settings.artifacts != "none":
                self._log_artifacts(run_id, Path(run.run_folder))
        except Exception:
            self._client.set_terminated(run_id, status="FAILED")
            raise
        self._client.set_terminated(run_id)
        return run_id

    def _log_artifacts(self, run_id: str, folder: Path) -> None:
        if self.settings.artifacts == "all":
            self._client.log_artifacts(run_id, str(folder))
            return
        for name in SUMMARY_FILES:
            if (folder / name).is_file():
                self._client.log_artifact(run_id, str(folder / name))

    def _failed(self, reason: str) -> dict[str, Any]:
        log.warning("experiment tracking failed, the run itself is unaffected: %s", reason)
        return {"status": "failed", "reason": reason, "uri": self.uri}


def quiet_mlflow() -> None:
    """MLflow and alembic announce every table they create at INFO; lbml's output keeps to its own lines.

    MLflow also sends usage telemetry to its vendor's servers from a background thread unless told
    not to; lbml never makes a network call the user did not ask for, so it is off unless
    ``MLFLOW_DISABLE_TELEMETRY`` is set explicitly (it is read when MLflow is first imported).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def tracking_line(outcome: Mapping[str, Any]) -> str:
    """One line for the command's output."""
    if outcome["status"] == "logged":
        return f"tracked: MLflow run {outcome['run_id']} in {outcome['uri']}"
    if outcome["status"] == "failed":
        return f"tracking FAILED ({outcome['reason']}); the run's results are complete"
    return "tracking: off"
