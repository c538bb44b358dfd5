"""The path from a scenario file to a report: prepare (load data → split) → train → backtest → run folder.

Each CLI command is a thin wrapper around one function here or in a sibling workflow module.
"""

import logging
from pathlib import Path

from lbml.atomic import atomic_folder
from lbml.engine.backtest import BacktestResult, load_strategy_class, run_backtest
from lbml.errors import ArtifactError
from lbml.features.guard import OVERRIDDEN, LookAheadPolicy
from lbml.models.artifact import LoadedArtifact, load_artifact
from lbml.plugins import PluginRegistry
from lbml.report.metrics import compute_metrics
from lbml.report.runfolder import new_run_path, write_json, write_reports, write_run_tables
from lbml.research.gate import OVERRIDE_STAMP, gate_decision
from lbml.research.training import REPORTS_DIR, scenario_pipeline
from lbml.scenario import Scenario
from lbml.split import Split
from lbml.sweeps import Sweep
from lbml.workflows.prepare import Prepared, prepare, run_data_hash, train_model, trial_registry, warm_up
from lbml.workflows.robustness import write_robustness

log = logging.getLogger(__name__)

IN_SAMPLE_STAMP = "IN-SAMPLE"
LOOK_AHEAD_STAMP = "LOOK-AHEAD-OVERRIDDEN"
#: Out-of-sample statistics of the model's training (purged CV) that metrics.json carries on top level.
MODEL_STATISTICS = (
    "oos_auc", "oos_logloss", "brier", "ece", "ic", "psr", "dsr", "sharpe_ci_low", "sharpe_ci_high",
    "n_trials", "ev_threshold", "ev_break_even_long", "ev_break_even_short", "ev_round_trip_cost_long",
    "ev_round_trip_cost_short", "calibration",
)


def is_in_sample(artifact: LoadedArtifact, split: Split) -> bool:
    return artifact.training_window.end >= split.test_start


def backtest(
    prepared: Prepared,
    registry: PluginRegistry,
    artifact_dir: Path,
    *,
    progress: bool = False,
    publish=None,
    allow_in_sample: bool = False,
    ignore_edge_gate: bool = False,
) -> tuple[BacktestResult, LoadedArtifact]:
    """Backtest a trained model; a closed edge gate (``lbml.research.gate``) runs it without trading."""
    scenario, market, split = prepared.scenario, prepared.market, prepared.split
    pipeline = scenario_pipeline(scenario, market, registry)
    artifact = load_artifact(artifact_dir, registry, expected_schema=pipeline.schema())
    window = artifact.training_window
    if window.end >= split.test_start and not allow_in_sample:
        raise ArtifactError(
            f"{artifact_dir}: model was trained up to {window.end}, inside the backtest window "
            f"starting {split.test_start} (pass --allow-in-sample to run it anyway, stamped IN-SAMPLE)"
        )
    gate = gate_decision(artifact.manifest.get("metrics", {}), scenario.gate, override=ignore_edge_gate,
                         strategy_cls=load_strategy_class(scenario.strategy.class_path)[0])
    log.log(logging.INFO if gate.status == "open" else logging.WARNING, gate.line())
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    rule = {"ev_margin": artifact.ev_margin, "pricing": artifact.pricing, "trade": gate.trades}
    if publish is None:
        result = run_backtest(scenario, market, split, pipeline, artifact.model, progress=progress, **rule)
    else:
        from lbml.signals.actor import run_with_publisher

        result = run_with_publisher(
            publish, artifact.model_id, pipeline.schema().hash,
            lambda publisher: run_backtest(
                scenario, market, split, pipeline, artifact.model, progress=progress, publisher=publisher, **rule
            ),
        )
    result.edge_gate = gate.to_dict()
    return result, artifact


def write_run(
    run_dir: Path,
    prepared: Prepared,
    result: BacktestResult,
    artifact: LoadedArtifact,
    *,
    model_trained_here: bool,
    registry: PluginRegistry | None = None,
    sweep: "Sweep | None" = None,
) -> dict:
    """Fill ``run_dir`` with the resolved scenario, split, trades, equity, metrics and reports."""
    scenario = prepared.scenario
    in_sample = is_in_sample(artifact, prepared.split)
    (run_dir / "scenario.toml").write_text(scenario.to_toml())
    write_json(
        run_dir / "split.json",
        prepared.split.to_dict()
        | {
            "model_trained_in_this_run": model_trained_here,
            "model": "model/" if model_trained_here else str(artifact.path),
        },
    )
    write_run_tables(run_dir, result)
    equity = result.record.equity_frame()
    metrics = compute_metrics(result, scenario.report.periods_per_year)
    metrics |= {
        "scenario": scenario.name,
        "scenario_hash": scenario.content_hash(),
        "model_id": artifact.model_id,
        "training_metrics": artifact.manifest.get("metrics", {}),
        "backtest_window": {"start": prepared.split.test_start, "end": prepared.split.test_end},
        "data": prepared.data,
        "in_sample": in_sample,
        "data_hash": run_data_hash(prepared),
    }
    if result.signals is not None:
        metrics["signals"] = result.signals
    if result.strategy_report:
        metrics["strategy_report"] = result.strategy_report
    metrics |= model_statistics(artifact)
    if result.edge_gate is not None:
        metrics["edge_gate"] = result.edge_gate
        if result.edge_gate["status"] == "overridden":
            metrics["report_stamp"] = " ".join(filter(None, (metrics.get("report_stamp"), OVERRIDE_STAMP)))
            (run_dir / OVERRIDE_STAMP).write_text(result.edge_gate["reason"] + "\n")
    stamp_look_ahead(run_dir, metrics, prepared.look_ahead)
    if in_sample:
        metrics["report_stamp"] = " ".join(filter(None, (IN_SAMPLE_STAMP, metrics.get("report_stamp"))))
        (run_dir / IN_SAMPLE_STAMP).write_text(
            f"model trained up to {artifact.training_window.end}, backtest starts {prepared.split.test_start}\n"
        )
    copy_model_reports(artifact, run_dir)
    if scenario.robustness.enabled and registry is not None and len(equity) > 1:
        metrics["robustness"] = write_robustness(run_dir, prepared, result, artifact, registry, scenario.robustness,
                                                sweep)
    stamp = f"{metrics['report_stamp']}: " if metrics.get("report_stamp") else ""
    write_reports(run_dir, result, metrics, f"{stamp}{scenario.name}", tearsheet=scenario.report.tearsheet,
                  periods_per_year=scenario.report.periods_per_year)
    return metrics


def stamp_look_ahead(run_dir: Path, metrics: dict, check: dict | None) -> None:
    """Put the look-ahead check into ``metrics``; when overridden, stamp the folder and ``report_stamp``."""
    if check is None:
        return
    metrics["look_ahead_check"] = check
    if check["status"] != OVERRIDDEN:
        return
    leak = next(leak for v in check["plugins"].values() for leak in v["leaks"])
    (run_dir / LOOK_AHEAD_STAMP).write_text(f"look-ahead check failed and was overridden: {leak['message']}\n")
    metrics["report_stamp"] = " ".join(filter(None, (metrics.get("report_stamp"), LOOK_AHEAD_STAMP)))


def run_scenario(
    scenario: Scenario,
    registry: PluginRegistry,
    runs_dir: Path,
    *,
    model_dir: Path | None = None,
    out: Path | None = None,
    progress: bool = False,
    publish=None,
    allow_in_sample: bool = False,
    ignore_edge_gate: bool = False,
    look_ahead: LookAheadPolicy | None = None,
    sweep: "Sweep | None" = None,
) -> tuple[Path, dict]:
    """``lbml backtest``: train on the training window unless a model is given, then backtest.

    ``sweep`` (``lbml.sweeps``) runs the CV splits and the robustness grid as independent tasks."""
    prepared = prepare(scenario, registry, progress=progress, look_ahead=look_ahead)
    final = out or new_run_path(runs_dir, scenario.name)
    with atomic_folder(final) as tmp:
        trained_here = model_dir is None
        if trained_here:
            trials = trial_registry(runs_dir)
            try:
                train_model(prepared, registry, tmp / "model", trials=trials, progress=progress, sweep=sweep)
            finally:
                trials.close()
            model_dir = tmp / "model"
        result, artifact = backtest(
            prepared, registry, model_dir, progress=progress, publish=publish, allow_in_sample=allow_in_sample,
            ignore_edge_gate=ignore_edge_gate,
        )
        metrics = write_run(tmp, prepared, result, artifact, model_trained_here=trained_here, registry=registry,
                            sweep=sweep)
    if trained_here:
        metrics["model_path"] = str(final / "model")
    return final, metrics


def model_statistics(artifact: LoadedArtifact) -> dict:
    """The model's out-of-sample training statistics (``None`` where an older artifact lacks them)."""
    trained = artifact.manifest.get("metrics", {})
    return {key: trained.get(key) for key in MODEL_STATISTICS}


def copy_model_reports(artifact: LoadedArtifact, run_dir: Path) -> None:
    """Copy the model's reliability diagram, importance table/plot and OOF predictions into the run."""
    import shutil

    source = artifact.path / REPORTS_DIR
    if source.is_dir() and source.resolve() != (run_dir / REPORTS_DIR).resolve():
        for file in source.iterdir():
            shutil.copy2(file, run_dir / file.name)
