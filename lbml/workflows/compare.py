"""``lbml runs compare A B``: two runs' key metrics side by side.

A run is named by its run folder (its ``metrics.json``) or by an MLflow run id in the tracking store
(``lbml.workflows.tracking``); the two may be mixed.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lbml.errors import ConfigError
from lbml.workflows.tracking import Tracker, numeric_metrics, quiet_mlflow

#: Rows of the comparison, in order; a metric neither run has is left out.
KEY_METRICS = (
    "total_return", "final_equity", "buy_and_hold_return", "sharpe", "sortino", "max_drawdown", "n_trades",
    "win_rate_net", "costs.total", "costs_over_gross_pnl", "n_liquidations", "oos_auc", "oos_logloss", "psr", "dsr",
    "n_trials", "reconciliation_error", "max_reconciliation_error", "n_periods",
    "best_oos_logloss", "best_dsr", "best_psr", "best_n_trials", "n_trials_study",
)
#: Facts about the runs shown above the metrics.
KEY_TAGS = ("lbml.kind", "lbml.scenario", "lbml.data_hash", "lbml.git_sha", "lbml.git_dirty", "lbml.run_folder")


@dataclass(frozen=True)
class RunRecord:
    label: str
    metrics: dict[str, float]
    tags: dict[str, str]


def load_run(ref: str, tracker: Tracker) -> RunRecord:
    """A run folder (with ``metrics.json``) or an MLflow run id in ``tracker``'s store."""
    folder = Path(ref)
    if folder.is_dir():
        if not (folder / "metrics.json").is_file():
            raise ConfigError(f"{ref}: a folder without metrics.json is not a run folder")
        metrics = json.loads((folder / "metrics.json").read_text())
        tags = {"lbml.scenario": str(metrics.get("scenario", "")), "lbml.data_hash": str(metrics.get("data_hash", "")),
                "lbml.kind": str(metrics.get("mode", "")), "lbml.run_folder": str(folder.resolve())}
        return RunRecord(folder.name, numeric_metrics(metrics), tags)
    if tracker.default_store is not None and not tracker.default_store.is_file():
        raise ConfigError(f"{ref}: neither a run folder nor an MLflow run id (no tracking store at {tracker.default_store})")
    quiet_mlflow()
    try:
        from mlflow.tracking import MlflowClient

        run = MlflowClient(tracking_uri=tracker.uri).get_run(ref)
    except Exception as exc:  # noqa: BLE001 - unknown id, unreadable store: one line for the user
        raise ConfigError(f"{ref}: neither a run folder nor an MLflow run id in {tracker.uri} "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    return RunRecord(run.info.run_name or ref, dict(run.data.metrics), dict(run.data.tags))


def comparison_table(a: RunRecord, b: RunRecord) -> str:
    """Aligned text: tags, then each key metric of either run with B − A."""
    rows: list[tuple[str, str, str, str]] = [("", a.label, b.label, "B - A")]
    for tag in KEY_TAGS:
        if tag in a.tags or tag in b.tags:
            rows.append((tag, a.tags.get(tag, "-"), b.tags.get(tag, "-"), ""))
    for key in KEY_METRICS:
        if key not in a.metrics and key not in b.metrics:
            continue
        va, vb = a.metrics.get(key), b.metrics.get(key)
        diff = _fmt(vb - va) if va is not None and vb is not None else ""
        rows.append((key, _fmt(va), _fmt(vb), diff))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isfinite(value) and value == int(value) and abs(value) < 1e12:
        return f"{int(value):,}"
    return f"{value:.6g}"
