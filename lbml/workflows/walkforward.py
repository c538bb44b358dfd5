"""Walk-forward backtest: retrain every K days, trade only the following period, stitch the periods.

Period k trades ``(test_start_k, test_start_k + K]``. Its model is trained (purged CV, calibration,
statistics: the same ``train`` path as ``lbml train``) on bars up to ``embargo_bars`` before
``test_start_k``: from the first bar (expanding window) or from ``train_days`` before (sliding).
Each period is backtested on a fresh engine starting from the scenario's balance; the stitched
curve chains the periods' returns into one equity curve, one tearsheet and one metrics file.
Periods are independent tasks (:func:`run_period`): ``--scheduler`` runs them on Dask (``lbml.sweeps``).
"""

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lbml.atomic import atomic_folder
from lbml.errors import DataError
from lbml.features.guard import LookAheadPolicy
from lbml.plugins import PluginRegistry
from lbml.report.metrics import compute_metrics, return_statistics
from lbml.report.plots import plot_equity
from lbml.report.runfolder import finish_run_folder, new_run_path, write_json
from lbml.scenario import Scenario
from lbml.split import Split

if TYPE_CHECKING:
    from lbml.sweeps import Sweep

log = logging.getLogger(__name__)


def walkforward_splits(bar_index: pd.DatetimeIndex, scenario: Scenario) -> list[Split]:
    """The periods of a walk-forward run as train/test splits (no training bar inside the test)."""
    wf = scenario.walkforward
    gap = scenario.split.embargo_bars
    every = pd.Timedelta(days=wf.retrain_every_days)
    span = pd.Timedelta(days=wf.train_days)
    first, last = bar_index[0], bar_index[-1]
    splits = []
    start = first + span
    while start < last:
        p = int(bar_index.searchsorted(start))
        if p - gap < 200 or p >= len(bar_index) - 1:
            start += every
            continue
        test_start = bar_index[p]
        train_end = bar_index[p - gap]
        train_start = first if wf.window == "expanding" else bar_index[int(bar_index.searchsorted(train_end - span))]
        test_end = bar_index[min(len(bar_index) - 1, int(bar_index.searchsorted(test_start + every, side="right")) - 1)]
        if test_end > test_start:
            splits.append(Split(train_start=train_start, train_end=train_end, test_start=test_start, test_end=test_end))
        start = test_start + every
    if not splits:
        raise DataError(
            f"walkforward: {last - first} of data leaves no test period after train_days={wf.train_days} "
            f"(need at least 200 training bars and one bar to trade)"
        )
    return splits


def stitch(curves: list[pd.DataFrame], initial: float) -> pd.DataFrame:
    """Chain per-period equity curves (each starting at its own balance) into one curve."""
    parts = []
    level = initial
    for curve in curves:
        if curve.empty:
            continue
        rel = curve["equity"] / curve["equity"].iloc[0]
        part = curve[["close"]].copy()
        part["equity"] = level * rel
        level = float(part["equity"].iloc[-1])
        parts.append(part)
    out = pd.concat(parts)
    return out[~out.index.duplicated(keep="last")][["equity", "close"]]


@dataclass(frozen=True)
class PeriodResult:
    """One walk-forward period: its model's files, its equity curve and its summary row."""

    model_files: dict[str, bytes]  # path inside the model folder → content
    curve: pd.DataFrame
    summary: dict


def run_period(item: tuple[int, Split], *, scenario: Scenario, market, registry: PluginRegistry) -> PeriodResult:
    """Train period ``item = (k, split)``'s model in a private folder, backtest its test window.

    A pure function of its inputs, so it runs the same here or as a Dask task on another machine;
    the model comes back as file contents.
    """
    from lbml.research.training import train
    from lbml.workflows.prepare import Prepared
    from lbml.workflows.run import backtest

    from lbml.sweeps import one_blas_thread

    k, split = item
    with one_blas_thread(), tempfile.TemporaryDirectory(prefix=f"lbml-period-{k:03d}-") as work:
        model_dir = Path(work) / "model"
        trained = train(scenario, market, registry, split, model_dir)
        result, artifact = backtest(Prepared(scenario, market, split), registry, trained.artifact_dir)
        files = {str(f.relative_to(model_dir)): f.read_bytes() for f in sorted(model_dir.rglob("*")) if f.is_file()}
    m = compute_metrics(result, scenario.report.periods_per_year)
    summary = split.to_dict() | {
        "model_id": artifact.model_id,
        "n_trades": m["n_trades"],
        "total_return": m["total_return"],
        "reconciliation_error": m["reconciliation_error"],
        "oos_auc_cv": trained.metrics.get("oos_auc"),
        "dsr_cv": trained.metrics.get("dsr"),
        "ev_threshold": trained.metrics.get("ev_threshold"),
    }
    return PeriodResult(files, result.record.equity_frame(), summary)


def run_walkforward(
    scenario: Scenario,
    registry: PluginRegistry,
    runs_dir: Path,
    *,
    out: Path | None = None,
    progress: bool = False,
    look_ahead: LookAheadPolicy | None = None,
    sweep: "Sweep | None" = None,
) -> tuple[Path, dict]:
    """``lbml walkforward``: train, trade and stitch every period; write one run folder.

    ``look_ahead`` runs the look-ahead check around the scenario's own
    training-window end before any period is trained. ``sweep`` (``lbml.sweeps``) runs the periods
    as independent tasks (e.g. on Dask); the run folder is the serial one's, bit for bit.
    """
    from lbml.research.training import data_hash
    from lbml.sweeps import SerialSweep
    from lbml.workflows.prepare import prepare
    from lbml.workflows.run import stamp_look_ahead

    prepared = prepare(scenario, registry, progress=progress, look_ahead=look_ahead)
    splits = walkforward_splits(prepared.market[scenario.data.symbol].bars.index, scenario)
    final = out or new_run_path(runs_dir, f"{scenario.name}-walkforward")
    with atomic_folder(final) as tmp:
        (tmp / "scenario.toml").write_text(scenario.to_toml())
        results = (sweep or SerialSweep()).map(
            run_period, list(enumerate(splits)), scenario=scenario, market=prepared.market, registry=registry,
        )
        periods, curves = [], []
        for k, period in enumerate(results):
            folder = tmp / "models" / f"period_{k:03d}"
            for name, content in period.model_files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(content)
            curves.append(period.curve)
            periods.append(period.summary)
            log.info("walkforward period %d/%d: %s", k + 1, len(splits), periods[-1])
        equity = stitch(curves, scenario.venue.starting_balance)
        equity.to_csv(tmp / "equity.csv")
        metrics = _stitched_metrics(equity, periods, scenario)
        metrics["data_hash"] = data_hash(prepared.market[scenario.data.symbol].bars.loc[: splits[-1].test_end])
        stamp_look_ahead(tmp, metrics, prepared.look_ahead)
        stamp = f"{metrics['report_stamp']}: " if metrics.get("report_stamp") else ""
        write_json(tmp / "walkforward.json", {"periods": periods, "config": scenario.walkforward.model_dump()})
        if len(equity) > 1:
            plot_equity(equity, tmp / "equity.png", f"{stamp}{scenario.name}: walk-forward (out-of-sample periods stitched)")
        finish_run_folder(tmp, metrics, f"{stamp}{scenario.name} walk-forward", tearsheet=scenario.report.tearsheet,
                          periods_per_year=scenario.report.periods_per_year)
    return final, metrics


def _stitched_metrics(equity: pd.DataFrame, periods: list[dict], scenario: Scenario) -> dict:
    start = float(equity["equity"].iloc[0])
    return {
        "scenario": scenario.name,
        "scenario_hash": scenario.content_hash(),
        "mode": "walkforward",
        "in_sample": False,
        "n_periods": len(periods),
        "window": scenario.walkforward.window,
        "retrain_every_days": scenario.walkforward.retrain_every_days,
        "backtest_window": {"start": periods[0]["test_start"], "end": periods[-1]["test_end"]},
        "initial_equity": start,
        "final_equity": float(equity["equity"].iloc[-1]),
        "total_return": float(equity["equity"].iloc[-1] / start - 1.0),
        "n_trades": int(sum(p["n_trades"] for p in periods)),
        "max_reconciliation_error": float(max(p["reconciliation_error"] for p in periods)),
    } | return_statistics(equity, scenario.report.periods_per_year)
