"""Train a scenario's model on its training window and write a safe artifact."""

import hashlib
import logging
import math
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from lbml.data.frames import InstrumentData, MarketData
from lbml.errors import DataError
from lbml.features.folds import fold_features_for
from lbml.features.pipeline import FeaturePipeline, available_inputs, build_pipeline, compute_features
from lbml.calibration import calibration_method, fit_calibrator
from lbml.evaluation import TradeRule, break_even, choose_margin, grid_hash, oos_statistics, round_trip_cost, trade_returns
from lbml.labels import label_spec, make_labels, sample_uniqueness
from lbml.models.artifact import TrainingWindow, save_artifact
from lbml.models.degenerate import require_varying_output
from lbml.registry_trials import TrialRegistry
from lbml.stats import sharpe
from lbml.validation import cpcv, cross_val_predict_purged, early_stopping_block, purge_train, purged_walk_forward
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario
from lbml.split import Split

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainResult:
    artifact_dir: Path
    n_samples: int
    n_features: int
    metrics: dict[str, float]


def scenario_pipeline(scenario: Scenario, market: MarketData, registry: PluginRegistry) -> FeaturePipeline:
    """Build the scenario's feature pipeline for the inputs this market can provide."""
    available = available_inputs(market, scenario.data.symbol, scenario.data.reference_symbol)
    return build_pipeline(registry, scenario.features.plugins, available)


def reference_bars(scenario: Scenario, market: MarketData) -> pd.DataFrame | None:
    ref = scenario.data.reference_symbol
    return market[ref].bars if ref is not None and ref in market else None


def funding_for(scenario: Scenario, market: MarketData) -> pd.DataFrame | None:
    return market.funding.get(scenario.data.symbol)


def data_hash(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class WindowInputs:
    """The training window's inputs as the feature pipeline reads them."""

    data: InstrumentData
    bars: pd.DataFrame
    reference_bars: pd.DataFrame | None
    funding: pd.DataFrame | None


def window_inputs(scenario: Scenario, market: MarketData, split: Split) -> WindowInputs:
    """Bars, ticks, reference bars and funding of the training window only."""
    data = market[scenario.data.symbol]
    window = slice(split.train_start, split.train_end)
    ref = reference_bars(scenario, market)
    funding = funding_for(scenario, market)
    return WindowInputs(
        _clip_ticks(data, split.train_start, split.train_end),
        data.bars.loc[window],
        ref.loc[window] if ref is not None else None,
        funding.loc[window] if funding is not None else None,
    )


@dataclass(frozen=True)
class TrainingSet:
    """Features, labels, label end times and label returns of the training window."""

    X: pd.DataFrame
    y: pd.Series
    t1: pd.Series
    forward_return: pd.Series
    bar_index: pd.DatetimeIndex


def training_set(
    scenario: Scenario, market: MarketData, pipeline: FeaturePipeline, split: Split
) -> TrainingSet:
    """Features and labels for the training window only: no data after ``split.train_end`` is read.

    The pipeline is fitted on the whole window (what the final model trains on and the artifact
    carries); cross-validation refits parameter-learning plugins per fold (``lbml.features.folds``).
    """
    inputs = window_inputs(scenario, market, split)
    bars = inputs.bars
    pipeline.fit(bars)
    features = compute_features(pipeline, inputs.data, bars, inputs.reference_bars, inputs.funding)
    labels = make_labels(bars, scenario.labels)
    X = features.loc[labels.y.index]
    ok = np.isfinite(X.to_numpy()).all(axis=1)
    return TrainingSet(X[ok], labels.y[ok], labels.t1[ok], labels.forward_return[ok], bars.index)


def training_matrix(
    scenario: Scenario, market: MarketData, pipeline: FeaturePipeline, split: Split
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features, labels and label end times of the training window (see :func:`training_set`)."""
    ts = training_set(scenario, market, pipeline, split)
    return ts.X, ts.y, ts.t1


def _clip_ticks(data, start: pd.Timestamp, end: pd.Timestamp):
    from dataclasses import replace

    # Ticks inside the first bar (which closes at ``start``) belong to it.
    lo = start - pd.Timedelta(minutes=1) if start is not None else None
    trades = data.trades.loc[lo:end] if data.trades is not None else None
    quotes = data.quotes.loc[lo:end] if data.quotes is not None else None
    return replace(data, trades=trades, quotes=quotes)


def train(
    scenario: Scenario,
    market: MarketData,
    registry: PluginRegistry,
    split: Split,
    out_dir: Path,
    *,
    trials: TrialRegistry | None = None,
    study: str | None = None,
    model_params: dict | None = None,
    on_fold: Callable[[int, float], None] | None = None,
    reports: bool = True,
) -> TrainResult:
    """Evaluate out of sample with purged CV, fit the final model, calibrate it, save the artifact.

    1. Purged walk-forward or CPCV over the training window minus a final calibration block gives
       out-of-fold predictions (each fold: early stopping and calibration on a purged block at the
       end of its training samples; feature plugins that learn parameters, e.g. GARCH, refitted on
       the fold's training bars and their features recomputed, see ``lbml.features.folds``).
    2. The EV margin is chosen on those predictions; OOS statistics (AUC, log loss, Brier, ECE,
       IC, PSR, DSR with N from the trial registry, bootstrap Sharpe interval) are computed.
    3. The final model is fitted on the same span (early stopping on its purged last block) and
       calibrated on the final block, purged from it; the artifact gets reports and statistics.
    4. The trial is recorded in ``trials`` (study defaults to the scenario name).
    """
    v = scenario.validation
    pipeline = scenario_pipeline(scenario, market, registry)
    ts = training_set(scenario, market, pipeline, split)
    X_frame, y_s, t1_s = ts.X, ts.y, ts.t1
    if len(y_s) < 200 or y_s.nunique() < 2:
        raise DataError(f"training window has too few labelled samples ({len(y_s)}) to fit a model")
    X = X_frame.to_numpy(np.float64)
    y = y_s.to_numpy()
    t0n = X_frame.index.asi8
    t1n = pd.DatetimeIndex(t1_s.to_numpy()).asi8
    fwd = ts.forward_return.to_numpy()
    n = len(y)
    bar = pd.Timedelta(minutes=market.bar_minutes)
    embargo = bar * math.ceil(v.embargo_fraction * n)
    calibrating = v.calibration != "none"
    n_cal = max(100, int(n * v.calibration_fraction)) if calibrating else 0
    cal = np.arange(n - n_cal, n)
    dev = purge_train(np.arange(n - n_cal), cal, t0n, t1n, int(embargo.value)) if calibrating else np.arange(n)
    params = scenario.model.params if model_params is None else model_params
    model_cls = registry.model(scenario.model.plugin)
    weights = _sample_weights(v.sample_weights, y, X_frame.index, t1_s, ts.bar_index)

    # 1. out-of-fold predictions on the development span (fewer splits when the window is short)
    t0_dev, t1_dev = X_frame.index[dev], pd.DatetimeIndex(t1_s.to_numpy()[dev])
    inputs = window_inputs(scenario, market, split)
    fold_features = fold_features_for(
        pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding, X[dev], t0_dev, t1_dev,
    )
    oof, plan = _purged_out_of_fold(
        lambda: model_cls(**params), X[dev], y[dev], t0_dev, t1_dev, v, embargo,
        None if weights is None else weights[dev], on_fold, fold_features,
    )
    base_rule = TradeRule(
        break_even(scenario, market.bar_minutes), 0.0, scenario.strategy.probability_shrinkage,
        round_trip_cost(scenario, market.bar_minutes),
    )
    study = study or scenario.name
    p_oof = np.full(n, np.nan)
    this_sharpe = 0.0
    grid = np.zeros(0)
    if oof is None:
        # Not even two purged splits fit in the window: no out-of-sample statistics, said plainly.
        log.warning("training window too short for purged CV: no out-of-sample statistics (%s)", plan)
        rule = base_rule
        stats: dict[str, Any] = {
            "oos_unavailable": plan, "ev_break_even": rule.break_even, "ev_margin": 0.0,
            "ev_threshold": rule.threshold, "embargo": str(embargo),
        }
    else:
        p_oof[dev] = oof.mean

        # 2. EV rule and OOS statistics
        rule, margin_scores = choose_margin(p_oof, fwd, t0n, t1n, base_rule, v.ev_margins)
        grid = trade_returns(p_oof, fwd, t0n, t1n, rule)
        prior_sharpes = trials.sharpes(study) if trials is not None else np.array([])
        n_prior = trials.count(study) if trials is not None else 0
        n_trials = (n_prior + 1) * len(v.ev_margins)
        traded = grid[grid != 0.0]
        this_sharpe = float(np.nan_to_num(sharpe(traded), nan=0.0)) if len(traded) >= 2 else 0.0
        trial_sharpes = np.append(prior_sharpes, this_sharpe) if len(prior_sharpes) else None
        seed = int(params.get("random_state", 0)) if isinstance(params, dict) else 0
        stats = oos_statistics(
            y, p_oof, fwd, grid, n_trials=n_trials, trial_sharpes=trial_sharpes,
            bootstrap_reps=v.bootstrap_reps, seed=seed,
        )
        stats |= {
            "validation_method": plan,
            "n_cv_splits": oof.n_splits,
            "n_cv_paths": int(oof.paths.shape[1]),
            "ev_break_even": rule.break_even,
            "ev_margin": rule.margin,
            "ev_threshold": rule.threshold,
            "ev_margin_sharpes": {str(k): v_ for k, v_ in margin_scores.items()},
            "embargo": str(embargo),
            "cv_refit_features": list(fold_features.plugin_names) if fold_features is not None else [],
        }
        if oof.paths.shape[1] > 1:
            stats |= _path_sharpes(oof.paths, y[dev], fwd[dev], t0n[dev], t1n[dev], rule)

    # 3. final fit on the development span, calibration on the final block
    fit_pos, val_pos = early_stopping_block(dev, t0n, t1n, v.early_stopping_fraction, int(embargo.value))
    model = model_cls(**params)
    extra = {"t0": t0n[fit_pos], "t1": t1n[fit_pos]} if model.uses_label_times else {}
    model.fit(
        X[fit_pos], y[fit_pos], sample_weight=None if weights is None else weights[fit_pos],
        eval_set=(X[val_pos], y[val_pos]) if len(np.unique(y[val_pos])) > 1 else None, **extra,
    )
    p_val = _up(model, X[val_pos])
    calibrator = None
    calibration_report: dict[str, Any] = {}
    if calibrating and len(np.unique(y[cal])) > 1:
        method = calibration_method(n_cal) if v.calibration == "auto" else v.calibration
        calibrator = fit_calibrator(model, X[cal], y[cal], method)
        raw_cal = _up(model, X[cal])
        calibration_report["calibration_block"] = (y[cal], raw_cal, calibrator.apply(raw_cal))
    deployed = calibration_report["calibration_block"][2] if calibrator is not None else p_val  # as it will predict
    require_varying_output(model.name, {"held-out": deployed, "out-of-fold": p_oof})
    metrics = {
        "n_fit": int(len(fit_pos)),
        "n_validation": int(len(val_pos)),
        "n_calibration": int(n_cal),
        "validation_auc": float(roc_auc_score(y[val_pos], p_val)) if len(np.unique(y[val_pos])) > 1 else float("nan"),
        "validation_logloss": float(log_loss(y[val_pos], p_val, labels=[0, 1])),
        "label_balance": float(y.mean()),
        "calibration": calibrator.method if calibrator is not None else None,
    } | stats
    artifact = save_artifact(
        out_dir,
        model=model,
        schema=pipeline.schema(),
        feature_state=pipeline.fitted_state(),
        label_spec=label_spec(scenario.labels),
        training_window=TrainingWindow(split.train_start, split.train_end),
        data_hash=data_hash(market[scenario.data.symbol].bars.loc[split.train_start : split.train_end]),
        scenario_hash=scenario.content_hash(),
        metrics=metrics,
        calibrator=calibrator,
    )
    if reports:
        _write_reports(artifact / REPORTS_DIR, model, X_frame, y, p_oof, calibration_report, scenario.name)
        if oof is not None:
            _write_fold_record(artifact / REPORTS_DIR / "cv_folds.json", oof, X_frame.index[dev], plan)

    # 4. trial registry (only trials with out-of-sample returns can inform the DSR/PBO)
    if trials is not None and oof is not None:
        trials.record(
            study=study, scenario=scenario.name, scenario_hash=scenario.content_hash(),
            model_plugin=scenario.model.plugin, params=dict(params),
            metrics={k: v_ for k, v_ in stats.items() if not isinstance(v_, dict)},
            sharpe=this_sharpe, grid_hash=grid_hash(X_frame.index), returns=grid,
        )
    log.info("trained %s on %d samples: %s", model.name, n, metrics)
    return TrainResult(artifact, n, X.shape[1], metrics)


REPORTS_DIR = "reports"


def _purged_out_of_fold(make_model, X, y, t0, t1, v, embargo, weights, on_fold, fold_features=None):
    """Out-of-fold predictions with the configured purged CV, else walk-forward with fewer splits.

    ``fold_features`` (a ``lbml.features.folds.FoldFeatures``) gives each split its own matrix, with
    the parameter-learning plugins fitted on that split's training bars.

    Returns ``(oof, plan)``; ``oof`` is None when not even two purged splits have enough samples,
    and ``plan`` then says why.
    """
    plans: list[tuple[str, int]] = [(v.method, v.n_splits)]
    plans += [("walk_forward", k) for k in range(min(v.n_splits, 5) - (v.method == "walk_forward"), 1, -1)]
    reasons = []
    for method, k in plans:
        if method == "cpcv":
            splits, n_groups = cpcv(t0, t1, v.n_groups, v.n_test_groups, embargo), v.n_groups
        else:
            splits, n_groups = purged_walk_forward(t0, t1, k, embargo, expanding=v.expanding), None
        try:
            oof = cross_val_predict_purged(
                make_model, X, y, t0, t1, splits, n_groups=n_groups, embargo=embargo, sample_weight=weights,
                early_stopping_fraction=v.early_stopping_fraction,
                calibration=v.calibration if v.fold_calibration and v.calibration != "none" else None,
                on_fold=on_fold, fold_features=fold_features,
            )
        except DataError as exc:
            reasons.append(str(exc))
            continue
        label = method if method == "cpcv" else f"walk_forward({k})"
        if reasons:
            log.warning("purged CV fell back to %s: %s", label, reasons[0])
        return oof, label
    return None, reasons[-1] if reasons else "no split"


def _write_fold_record(path: Path, oof, sample_times: pd.DatetimeIndex, plan: str) -> None:
    """Per CV split: its test span, training size and the feature parameters fitted on its bars."""
    import json

    folds = []
    for k in range(oof.n_splits):
        record: dict[str, Any] = {"split": k, "n_fit": oof.n_fit[k] if k < len(oof.n_fit) else None}
        if k < len(oof.feature_states):
            record |= oof.feature_states[k]
        folds.append(record)
    payload = {"validation_method": plan, "n_samples": int(len(sample_times)), "splits": folds}
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def _up(model, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X)[:, list(model.classes_).index(1)]


def _sample_weights(kind: str, y, index, t1, bar_index) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "balanced":
        from sklearn.utils.class_weight import compute_sample_weight

        return compute_sample_weight("balanced", y)
    u = sample_uniqueness(index, t1, bar_index).to_numpy()
    return u / u.mean()


def _path_sharpes(paths, y, fwd, t0n, t1n, rule) -> dict[str, float]:
    """CPCV: the distribution of per-path trade Sharpe ratios, not one number."""
    srs = []
    for j in range(paths.shape[1]):
        r = trade_returns(paths[:, j], fwd, t0n, t1n, rule)
        traded = r[r != 0.0]
        srs.append(sharpe(traded) if len(traded) >= 2 else float("nan"))
    srs = np.array(srs)
    finite = srs[np.isfinite(srs)]
    return {
        "cpcv_path_sharpe_median": float(np.median(finite)) if len(finite) else float("nan"),
        "cpcv_path_sharpe_p5": float(np.percentile(finite, 5)) if len(finite) else float("nan"),
        "cpcv_path_prob_sharpe_below_0": float((finite < 0).mean()) if len(finite) else float("nan"),
    }


def _write_reports(folder: Path, model, X: pd.DataFrame, y, p_oof, reports, name: str) -> None:
    """Reliability diagram, OOF predictions and feature importance (informational, not hashed)."""
    from lbml.calibration import reliability_diagram
    from lbml.importance import feature_importance, plot_importance

    folder.mkdir(exist_ok=True)
    ok = np.isfinite(p_oof)
    pd.DataFrame({"ts": X.index[ok], "y": y[ok], "p_oof": p_oof[ok]}).to_csv(folder / "oof_predictions.csv", index=False)
    curves = {"out-of-fold": p_oof[ok]}
    if "calibration_block" in reports:
        y_cal, raw, calibrated = reports["calibration_block"]
        reliability_diagram(y_cal, {"raw (calibration block)": raw, "calibrated (in-sample for the map)": calibrated},
                            folder / "reliability_calibration_block.png", f"{name}: calibration block")
    if ok.any():  # no out-of-fold predictions when the window was too short for purged CV
        reliability_diagram(y[ok], curves, folder / "reliability.png", f"{name}: out-of-fold reliability")
    table = feature_importance(model, X)
    if table is not None:
        table.to_csv(folder / "feature_importance.csv")
        plot_importance(table, folder / "feature_importance.png", name)
