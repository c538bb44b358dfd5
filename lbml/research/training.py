"""Train a scenario's model on its training window and write a safe artifact."""

import logging
import math
from dataclasses import dataclass, replace
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from lbml.data.frames import InstrumentData, MarketData
from lbml.data.provenance import content_hash
from lbml.errors import DataError
from lbml.research.folds import fold_features_for
from lbml.features.pipeline import FeaturePipeline, available_inputs, build_pipeline, compute_features
from lbml.features.sequence import feature_groups, pipeline_for_window
from lbml.research.importance import fold_permutation_importance
from lbml.models.calibration import calibration_method, fit_calibrator
from lbml.research.evaluation import choose_margin, grid_hash, oos_statistics, trade_grid
from lbml.research.labels import forward_returns, label_spec, make_labels, sample_uniqueness
from lbml.research.payoff import TradeOutcomes, estimate_payoff, simulate_brackets
from lbml.research.gate import edge_evidence
from lbml.pricing import Pricing, kelly_params_for
from lbml.sizing import Payoff
from lbml.models.artifact import TrainingWindow, save_artifact
from lbml.models.degenerate import require_varying_output
from lbml.models.resampling import ResampledModel, ResampleReport, resampling_effect, with_resampling
from lbml.research.trials import StudyKey, TrialRegistry, configuration_hash, trial_evidence
from lbml.research.stats import sharpe
from lbml.research.validation import cpcv, cross_val_predict_purged, early_stopping_block, purge_train, purged_walk_forward
from lbml.models.progress import TrainingProgress
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario
from lbml.split import Split

if TYPE_CHECKING:
    from lbml.sweeps import Sweep

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class TrainResult:
    artifact_dir: Path
    n_samples: int
    n_features: int
    metrics: dict[str, float]


def scenario_pipeline(
    scenario: Scenario, market: MarketData, registry: PluginRegistry, model_params: dict | None = None
) -> FeaturePipeline:
    """Build the scenario's feature pipeline for the inputs this market can provide.

    A sequence model (``ModelPlugin.input_window`` > 1) gets rows over its window of past bars
    (``lbml.features.sequence``); ``model_params`` replaces the scenario's (e.g. a search trial).
    """
    available = available_inputs(market, scenario.data.symbol, scenario.data.reference_symbol)
    pipeline = build_pipeline(registry, scenario.features.plugins, available)
    params = scenario.model.params if model_params is None else model_params
    window = registry.model(scenario.model.plugin)(**params).input_window()
    return pipeline_for_window(pipeline.plugins, window)


def reference_bars(scenario: Scenario, market: MarketData) -> pd.DataFrame | None:
    ref = scenario.data.reference_symbol
    return market[ref].bars if ref is not None and ref in market else None


def funding_for(scenario: Scenario, market: MarketData) -> pd.DataFrame | None:
    return market.funding.get(scenario.data.symbol)


def data_hash(frame: pd.DataFrame) -> str:
    return content_hash(frame)


def training_data_hash(scenario: Scenario, market: MarketData, split: Split) -> str:
    """Hash of the training window's bars: the dataset half of a trial's identity."""
    return data_hash(market[scenario.data.symbol].bars.loc[split.train_start : split.train_end])


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
    """Every bar of the training window the strategy could trade, with its label where it has one.

    Rows are the bars with finite features and a known forward return. ``labelled`` marks the
    bars with a label (outside the dead zone): only they are fitted on; trade statistics use all.
    ``y`` is 1 (up), 0 (down) or -1 (no label); ``t1`` the label's end (the horizon's end for
    unlabelled bars); ``outcomes`` each row's simulated bracket trade (``lbml.research.payoff``).
    """

    X: pd.DataFrame
    y: pd.Series
    t1: pd.Series
    forward_return: pd.Series
    bar_index: pd.DatetimeIndex
    labelled: np.ndarray
    outcomes: TradeOutcomes


def training_set(
    scenario: Scenario, market: MarketData, pipeline: FeaturePipeline, split: Split
) -> TrainingSet:
    """Features and labels for the training window only: no data after ``split.train_end`` is read.

    The pipeline is fitted on the whole window (what the final model trains on and the artifact
    carries); cross-validation refits parameter-learning plugins per fold (``lbml.research.folds``).
    """
    inputs = window_inputs(scenario, market, split)
    bars = inputs.bars
    pipeline.fit(bars)
    features = compute_features(pipeline, inputs.data, bars, inputs.reference_bars, inputs.funding)
    labels = make_labels(bars, scenario.labels)
    fwd, horizon_end = forward_returns(bars, scenario.labels.horizon_bars)
    s = scenario.strategy
    sim = simulate_brackets(bars, s.stop_loss_pct, s.take_profit_pct, s.max_holding_bars)
    ok = np.isfinite(features.to_numpy()).all(axis=1) & np.isfinite(fwd)
    X = features[ok]
    labelled = X.index.isin(labels.y.index)
    y = pd.Series(-1, index=X.index, dtype=np.int8)
    y[labelled] = labels.y.reindex(X.index[labelled]).to_numpy()
    t1 = horizon_end[ok].copy()
    t1[labelled] = labels.t1.reindex(X.index[labelled]).to_numpy()
    outcomes = sim.take(ok)
    return TrainingSet(X, y, t1, pd.Series(fwd[ok], index=X.index), bars.index, labelled, outcomes)


def training_matrix(
    scenario: Scenario, market: MarketData, pipeline: FeaturePipeline, split: Split
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features, labels and label end times of the labelled training bars (see :func:`training_set`)."""
    ts = training_set(scenario, market, pipeline, split)
    return ts.X[ts.labelled], ts.y[ts.labelled], ts.t1[ts.labelled]


def training_pricing(scenario: Scenario, market: MarketData, split: Split, ts: TrainingSet, rows: np.ndarray) -> Pricing:
    """The payoff, expected funding and volatility the EV rule prices trades with (training window only)."""
    try:
        payoff = estimate_payoff(ts.outcomes, ts.forward_return.to_numpy(), market.bar_minutes, rows)
    except ValueError:
        # Fewer bars than a trade can last: price it by its bracket (optimistic; the gate then has no evidence).
        s = scenario.strategy
        log.warning("training window shorter than max_holding_bars: trades priced by their bracket")
        payoff = Payoff.from_brackets(s.take_profit_pct, s.stop_loss_pct, s.max_holding_bars * market.bar_minutes)
    funding = funding_for(scenario, market)
    rate, interval = 0.0, 480.0
    if funding is not None and len(funding.loc[split.train_start : split.train_end]) > 1:
        window = funding.loc[split.train_start : split.train_end]
        rate = float(window["rate"].mean())
        interval = float(np.median(np.diff(window.index.asi8)) / 60e9)
    close = market[scenario.data.symbol].bars.loc[split.train_start : split.train_end, "close"].to_numpy(np.float64)
    sigma = float(np.std(np.diff(np.log(close)))) / np.sqrt(market.bar_minutes) if len(close) > 2 else 0.0
    return Pricing(payoff, rate, interval, sigma)


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
    progress: bool = False,
    sweep: "Sweep | None" = None,
) -> TrainResult:
    """Evaluate out of sample with purged CV, fit the final model, calibrate it, save the artifact.

    1. Purged walk-forward or CPCV over the training window minus a final calibration block gives
       out-of-fold predictions for every bar (each fold: fitted on labelled bars only, early
       stopping and calibration on a purged block at the end of its training samples; feature
       plugins that learn parameters, e.g. GARCH, refitted on the fold's training bars and their
       features recomputed, see ``lbml.research.folds``).
    2. The trade's payoff and costs are priced on the training window (``lbml.pricing``); the EV
       margin is chosen on the out-of-fold predictions with the strategy's own rule; OOS statistics
       (AUC, log loss, Brier, ECE on labelled bars; IC, PSR, DSR with N from the trial registry,
       bootstrap Sharpe interval on every bar) are computed, and the edge gate's evidence with them.
    3. The final model is fitted on the same span (early stopping on its purged last block) and
       calibrated on the final block, purged from it; the artifact gets reports and statistics.
    4. The trial is recorded in ``trials`` (study defaults to the scenario name).

    ``progress`` shows the stages and folds on stderr (``lbml.models.progress``).
    ``sweep`` (``lbml.sweeps``) fits the CV splits as independent tasks (e.g. on Dask), bit for bit
    as the serial loop does.
    """
    shown = TrainingProgress(progress)
    try:
        return _train(scenario, market, registry, split, out_dir, trials=trials, study=study,
                      model_params=model_params, on_fold=on_fold, reports=reports, progress=shown, sweep=sweep)
    finally:
        shown.close()


def _train(scenario, market, registry, split, out_dir, *, trials, study, model_params, on_fold, reports,
           progress: TrainingProgress, sweep=None) -> TrainResult:
    def fold_done(k: int, loss: float) -> None:
        progress.fold(k, loss)
        if on_fold is not None:
            on_fold(k, loss)

    params = scenario.model.params if model_params is None else model_params
    progress.stage("features and labels")
    samples = _training_samples(scenario, market, registry, split, params)
    model_cls = registry.model(scenario.model.plugin)
    progress.stage("cross-validation")
    cv = _cross_validate(scenario, market, split, samples, model_cls, params, fold_done, reports, sweep)
    progress.stage("statistics")
    evidence = _out_of_sample_evidence(scenario, market, split, samples, cv, trials, study, params)
    resampling_report = _resampling_effect(scenario, samples, cv, model_cls, params)
    progress.stage("final fit")
    final = _final_fit(scenario, samples, model_cls, params)
    if resampling_report is not None:
        resampling_report["final_fit"] = final.resampled[-1].to_dict()
    calibrator, calibration_report = _calibrate(scenario, samples, final.model)
    metrics = _training_metrics(scenario, samples, evidence, final, calibrator, calibration_report, resampling_report)
    progress.stage("artifact and reports")
    artifact = save_artifact(
        out_dir,
        model=final.model,
        schema=samples.pipeline.schema(),
        feature_state=samples.pipeline.fitted_state(),
        label_spec=label_spec(scenario.labels),
        training_window=TrainingWindow(split.train_start, split.train_end),
        data_hash=evidence.study_key.dataset_hash,
        scenario_hash=scenario.content_hash(),
        metrics=metrics,
        calibrator=calibrator,
    )
    if reports:
        _write_training_reports(artifact / REPORTS_DIR, scenario, samples, cv, evidence, final.model, calibration_report)
    _record_trial(trials, scenario, cv, evidence, params, samples)
    log.info("trained %s on %d samples: %s", final.model.name, samples.n, metrics)
    return TrainResult(artifact, int(samples.lab.sum()), samples.X.shape[1], metrics)


@dataclass(frozen=True)
class _Samples:
    """The training window as a matrix, and the spans cross-validation, the final fit and calibration use."""

    pipeline: FeaturePipeline
    ts: TrainingSet
    X: np.ndarray
    y: np.ndarray
    lab: np.ndarray  # labelled rows: the only ones fitted on
    t0n: np.ndarray
    t1n: np.ndarray
    bar: pd.Timedelta
    window: int  # a sequence model's input window in bars (1 otherwise)
    embargo: pd.Timedelta
    dev: np.ndarray  # development span: cross-validation and the final fit
    cal: np.ndarray  # final calibration block, purged from the development span
    weights: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.y)


def _training_samples(scenario: Scenario, market: MarketData, registry: PluginRegistry, split: Split,
                      params: dict) -> _Samples:
    """Features and labels of the training window; the development span and calibration block."""
    v = scenario.validation
    pipeline = scenario_pipeline(scenario, market, registry, params)
    ts = training_set(scenario, market, pipeline, split)
    X_frame, y_s, t1_s, lab = ts.X, ts.y, ts.t1, ts.labelled
    if lab.sum() < 200 or y_s[lab].nunique() < 2:
        raise DataError(f"training window has too few labelled samples ({int(lab.sum())}) to fit a model")
    X = X_frame.to_numpy(np.float64)
    y = y_s.to_numpy()
    t0n = X_frame.index.asi8
    t1n = pd.DatetimeIndex(t1_s.to_numpy()).asi8
    n = len(y)
    bar = pd.Timedelta(minutes=market.bar_minutes)
    # A sequence model's row at bar t holds the features of bars t-window+1..t: a training row within
    # window-1 bars after a test block reads the test block's bars, so the embargo grows by that much.
    window = int(getattr(pipeline, "window", 1))
    embargo = bar * (math.ceil(v.embargo_fraction * n) + window - 1)
    calibrating = v.calibration != "none"
    labelled_rows = np.flatnonzero(lab)
    n_cal = max(100, int(len(labelled_rows) * v.calibration_fraction)) if calibrating else 0
    cal = np.arange(labelled_rows[-n_cal], n) if calibrating else np.arange(0)
    dev = purge_train(np.arange(n - len(cal)), cal, t0n, t1n, int(embargo.value)) if calibrating else np.arange(n)
    weights = _sample_weights(v.sample_weights, y, X_frame.index, t1_s, ts.bar_index, lab)
    return _Samples(pipeline, ts, X, y, lab, t0n, t1n, bar, window, embargo, dev, cal, weights)


@dataclass(frozen=True)
class _CrossValidation:
    oof: Any  # the out-of-fold result, None when not even two purged splits fit in the window
    plan: str
    t0: pd.DatetimeIndex  # label start and end of the development span's rows
    t1: pd.DatetimeIndex
    fold_features: Any
    resampled: list[ResampleReport]  # what resampling did in each fold (when configured)


def _cross_validate(scenario: Scenario, market: MarketData, split: Split, s: _Samples, model_cls, params,
                    fold_done, reports: bool, sweep) -> _CrossValidation:
    """1. Out-of-fold predictions on the development span (fewer splits when the window is short)."""
    dev = s.dev
    t0_dev, t1_dev = s.ts.X.index[dev], pd.DatetimeIndex(s.ts.t1.to_numpy()[dev])
    inputs = window_inputs(scenario, market, split)
    fold_features = fold_features_for(
        s.pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding, s.X[dev], t0_dev, t1_dev,
    )
    resampling = scenario.model.resampling
    fold_resampled: list[ResampleReport] = []
    oof, plan = _purged_out_of_fold(
        lambda: with_resampling(model_cls(**params), resampling, fold_resampled), s.X[dev], s.y[dev], t0_dev, t1_dev,
        scenario.validation, s.embargo, None if s.weights is None else s.weights[dev], fold_done, fold_features,
        s.lab[dev],
        importance=feature_groups(s.pipeline) if reports else False,
        # resampling reports are collected in this process: its folds stay here
        sweep=sweep if resampling.method == "none" else None,
    )
    return _CrossValidation(oof, plan, t0_dev, t1_dev, fold_features, fold_resampled)


@dataclass(frozen=True)
class _Evidence:
    pricing: Pricing
    rule: Any  # the EV rule's KellyParams with the chosen margin
    stats: dict[str, Any]
    p_oof: np.ndarray  # out-of-fold probability per row (NaN outside the development span)
    trades: Any  # the out-of-fold trades at the chosen margin (None without out-of-fold predictions)
    grid: np.ndarray
    margin_scores: dict | None
    study_key: StudyKey
    config_hash: str


def _out_of_sample_evidence(scenario: Scenario, market: MarketData, split: Split, s: _Samples,
                            cv: _CrossValidation, trials: TrialRegistry | None, study: str | None,
                            params) -> _Evidence:
    """2. Price the trade, choose the EV margin on the out-of-fold predictions, compute OOS statistics."""
    v = scenario.validation
    dev, n, oof = s.dev, s.n, cv.oof
    pricing = training_pricing(scenario, market, split, s.ts, dev)
    base_params = kelly_params_for(scenario, pricing)
    study_key = StudyKey(study or scenario.name, training_data_hash(scenario, market, split))
    config_hash = configuration_hash(scenario, params)
    p_oof = np.full(n, np.nan)
    grid = np.zeros(0)
    trades = margin_scores = None
    if oof is None:
        # Not even two purged splits fit in the window: no out-of-sample statistics, said plainly.
        log.warning("training window too short for purged CV: no out-of-sample statistics (%s)", cv.plan)
        rule = replace(base_params, ev_margin=max(v.ev_margins))
        stats: dict[str, Any] = {"oos_unavailable": cv.plan, "ev_margin": rule.ev_margin, "embargo": str(s.embargo)}
    else:
        p_oof[dev] = oof.mean
        bar_ns = int(s.bar.value)
        rule, margin_scores = choose_margin(p_oof, s.ts.outcomes, s.t0n, bar_ns, base_params, v.ev_margins)
        trades = trade_grid(p_oof, s.ts.outcomes, s.t0n, bar_ns, rule)
        grid = trades.returns
        # every margin tried is a trial; a re-run of this configuration on this dataset adds none
        evidence = trial_evidence(trials, study_key, config_hash, margin_scores)
        seed = int(params.get("random_state", 0)) if isinstance(params, dict) else 0
        stats = oos_statistics(
            s.y, s.lab, p_oof, s.ts.forward_return.to_numpy(), trades, n_trials=evidence.n_trials,
            trial_variance=evidence.variance, bootstrap_reps=v.bootstrap_reps, seed=seed,
            score=_scattered(oof.raw_mean, dev, n),
        )
        stats |= {
            "trial_variance": evidence.variance,
            "validation_method": cv.plan,
            "n_cv_splits": oof.n_splits,
            "n_cv_paths": int(oof.paths.shape[1]),
            "ev_margin": rule.ev_margin,
            "ev_margin_sharpes": {str(k): v_ for k, v_ in margin_scores.items()},
            "embargo": str(s.embargo),
            "embargo_input_window_bars": s.window - 1,
            "cv_refit_features": list(cv.fold_features.plugin_names) if cv.fold_features is not None else [],
        }
        if oof.paths.shape[1] > 1:
            stats |= _path_sharpes(oof.paths, s.ts.outcomes, s.t0n[dev], bar_ns, rule, dev)
    stats |= _rule_summary(rule)
    return _Evidence(pricing, rule, stats, p_oof, trades, grid, margin_scores, study_key, config_hash)


def _resampling_effect(scenario: Scenario, s: _Samples, cv: _CrossValidation, model_cls, params) -> dict | None:
    """What resampling did to the out-of-fold log loss: the same splits without it (None: not configured)."""
    resampling = scenario.model.resampling
    if resampling.method == "none":
        return None
    dev, oof = s.dev, cv.oof
    plain = None
    if oof is not None:
        plain, _ = _purged_out_of_fold(
            lambda: model_cls(**params), s.X[dev], s.y[dev], cv.t0, cv.t1, scenario.validation, s.embargo,
            None if s.weights is None else s.weights[dev], None, cv.fold_features, s.lab[dev],
        )
    fits = cv.resampled[-oof.n_splits:] if oof is not None else cv.resampled  # the plan that succeeded
    return resampling_effect(resampling, fits, s.y[dev], s.lab[dev], oof, plain)


@dataclass(frozen=True)
class _FinalFit:
    model: Any  # the fitted model plugin (without its resampling wrapper)
    fit_pos: np.ndarray
    val_pos: np.ndarray  # the early-stopping block
    p_val: np.ndarray
    resampled: list[ResampleReport]


def _final_fit(scenario: Scenario, s: _Samples, model_cls, params) -> _FinalFit:
    """3. Fit the final model on the development span, early stopping on its purged last block."""
    v = scenario.validation
    fit_pos, val_pos = early_stopping_block(s.dev, s.t0n, s.t1n, v.early_stopping_fraction, int(s.embargo.value))
    fit_pos, val_pos = fit_pos[s.lab[fit_pos]], val_pos[s.lab[val_pos]]
    final_resampled: list[ResampleReport] = []
    fitting = with_resampling(model_cls(**params), scenario.model.resampling, final_resampled)
    extra = {"t0": s.t0n[fit_pos], "t1": s.t1n[fit_pos]} if fitting.uses_label_times else {}
    X, y = s.X, s.y
    fitting.fit(
        X[fit_pos], y[fit_pos], sample_weight=None if s.weights is None else s.weights[fit_pos],
        eval_set=(X[val_pos], y[val_pos]) if len(np.unique(y[val_pos])) > 1 else None, **extra,
    )
    model = fitting.base if isinstance(fitting, ResampledModel) else fitting  # the artifact holds the model
    return _FinalFit(model, fit_pos, val_pos, _up(model, X[val_pos]), final_resampled)


def _calibrate(scenario: Scenario, s: _Samples, model) -> tuple[Any, dict[str, Any]]:
    """Calibrate the final model on the final block (None when off or the block has one class)."""
    v = scenario.validation
    cal_l = s.cal[s.lab[s.cal]]
    calibrator = None
    calibration_report: dict[str, Any] = {}
    if v.calibration != "none" and len(np.unique(s.y[cal_l])) > 1:
        method = calibration_method(len(cal_l)) if v.calibration == "auto" else v.calibration
        calibrator = fit_calibrator(model, s.X[cal_l], s.y[cal_l], method)
        raw_cal = _up(model, s.X[cal_l])
        calibration_report["calibration_block"] = (s.y[cal_l], raw_cal, calibrator.apply(raw_cal))
    return calibrator, calibration_report


def _training_metrics(scenario: Scenario, s: _Samples, evidence: _Evidence, final: _FinalFit, calibrator,
                      calibration_report: dict, resampling_report: dict | None) -> dict:
    """The artifact's metrics: refuses a degenerate model first, adds the edge gate's evidence last."""
    deployed = calibration_report["calibration_block"][2] if calibrator is not None else final.p_val  # as it will predict
    require_varying_output(final.model.name, {"held-out": deployed, "out-of-fold": evidence.p_oof})
    y, val_pos, p_val = s.y, final.val_pos, final.p_val
    metrics = {
        "n_fit": int(len(final.fit_pos)),
        "n_validation": int(len(val_pos)),
        "n_calibration": int(len(s.cal[s.lab[s.cal]])),
        # In-sample: the block early stopping tuned the number of trees on (not out of sample).
        "early_stopping_auc": float(roc_auc_score(y[val_pos], p_val)) if len(np.unique(y[val_pos])) > 1 else float("nan"),
        "early_stopping_logloss": float(log_loss(y[val_pos], p_val, labels=[0, 1])),
        "label_balance": float(y[s.lab].mean()),
        "calibration": calibrator.method if calibrator is not None else None,
        "pricing": evidence.pricing.to_dict(),
    } | evidence.stats | ({"resampling": resampling_report} if resampling_report is not None else {})
    metrics["edge_gate"] = edge_evidence(metrics, scenario.gate)
    return metrics


def _write_training_reports(folder: Path, scenario: Scenario, s: _Samples, cv: _CrossValidation,
                            evidence: _Evidence, model, calibration_report: dict) -> None:
    lab, oof = s.lab, cv.oof
    _write_reports(folder, model, s.ts.X[lab], s.y[lab], evidence.p_oof[lab], calibration_report, scenario.name,
                   oof.fold_reports if oof is not None else None)
    if oof is not None:
        _write_fold_record(folder / "cv_folds.json", oof, s.ts.X.index[s.dev], cv.plan)
        _write_oof_trades(folder / "oof_trades.csv", s.ts.X.index, evidence.trades)


def _record_trial(trials: TrialRegistry | None, scenario: Scenario, cv: _CrossValidation, evidence: _Evidence,
                  params, s: _Samples) -> None:
    """4. The trial registry (only trials with out-of-sample returns can inform the DSR/PBO)."""
    if trials is None or cv.oof is None:
        return
    trials.record(
        key=evidence.study_key, config_hash=evidence.config_hash, scenario=scenario.name,
        model_plugin=scenario.model.plugin, params=dict(params),
        metrics={k: v_ for k, v_ in evidence.stats.items() if not isinstance(v_, dict)},
        margin_sharpes=evidence.margin_scores, grid_hash=grid_hash(s.ts.X.index), returns=evidence.grid,
    )


def _scattered(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[rows] = values
    return out


def _rule_summary(params) -> dict[str, float]:
    """The EV rule's break-even probabilities and round-trip costs, as the strategy will apply them."""
    from lbml.sizing import break_even_probability

    out: dict[str, float] = {"ev_margin": params.ev_margin}
    for side, name in ((1, "long"), (-1, "short")):
        win, loss, hold = params.payoff.side(side)
        cap = params.cap(side)
        cost = params.costs.round_trip(side, cap, hold)
        out[f"ev_break_even_{name}"] = break_even_probability(win, loss, cost.total)
        out[f"ev_round_trip_cost_{name}"] = cost.total
    out["ev_threshold"] = min(out["ev_break_even_long"], out["ev_break_even_short"]) + params.ev_margin
    return out


REPORTS_DIR = "reports"


def _purged_out_of_fold(
    make_model, X, y, t0, t1, v, embargo, weights, on_fold, fold_features=None, trainable=None, importance=False,
    sweep=None,
):
    """Out-of-fold predictions with the configured purged CV, else walk-forward with fewer splits.

    ``fold_features`` (a ``lbml.research.folds.FoldFeatures``) gives each split its own matrix, with
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
                on_fold=on_fold, fold_features=fold_features, trainable=trainable,
                fold_report=_importance_report(importance), sweep=sweep,
            )
        except DataError as exc:
            reasons.append(str(exc))
            continue
        label = method if method == "cpcv" else f"walk_forward({k})"
        if reasons:
            log.warning("purged CV fell back to %s: %s", label, reasons[0])
        return oof, label
    return None, reasons[-1] if reasons else "no split"


def _importance_report(importance):
    """``fold_report`` for CV: permutation importance, per column group for a sequence model's rows."""
    from functools import partial

    if importance is False:
        return None
    if isinstance(importance, dict):
        return partial(fold_permutation_importance, groups=importance)
    return fold_permutation_importance


def _write_oof_trades(path: Path, times: pd.DatetimeIndex, trades) -> None:
    """The out-of-fold trades the statistics (PSR, DSR, Sharpe interval) and the edge gate are computed on."""
    taken = trades.side != 0
    pd.DataFrame({
        "ts": times[taken], "side": trades.side[taken], "net_return": trades.returns[taken],
        "assumed_cost": trades.cost[taken], "break_even": trades.break_even[taken],
    }).to_csv(path, index=False)


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


def _sample_weights(kind: str, y, index, t1, bar_index, labelled) -> np.ndarray | None:
    """Weights of the labelled samples (1 elsewhere: unlabelled bars are never fitted on)."""
    if kind == "none":
        return None
    out = np.ones(len(y))
    if kind == "balanced":
        from sklearn.utils.class_weight import compute_sample_weight

        out[labelled] = compute_sample_weight("balanced", y[labelled])
        return out
    u = sample_uniqueness(index[labelled], t1[labelled], bar_index).to_numpy()
    out[labelled] = u / u.mean()
    return out


def _path_sharpes(paths, outcomes: TradeOutcomes, t0n, bar_ns: int, rule, rows) -> dict[str, float]:
    """CPCV: the distribution of per-path trade Sharpe ratios, not one number."""
    sub = outcomes.take(rows)
    srs = []
    for j in range(paths.shape[1]):
        traded = trade_grid(paths[:, j], sub, t0n, bar_ns, rule).traded
        srs.append(sharpe(traded) if len(traded) >= 2 else float("nan"))
    srs = np.array(srs)
    finite = srs[np.isfinite(srs)]
    return {
        "cpcv_path_sharpe_median": float(np.median(finite)) if len(finite) else float("nan"),
        "cpcv_path_sharpe_p5": float(np.percentile(finite, 5)) if len(finite) else float("nan"),
        "cpcv_path_prob_sharpe_below_0": float((finite < 0).mean()) if len(finite) else float("nan"),
    }


def _write_reports(folder: Path, model, X: pd.DataFrame, y, p_oof, reports, name: str, fold_reports=None) -> None:
    """Reliability diagram, OOF predictions and feature importance (informational, not hashed)."""
    from lbml.models.calibration import reliability_diagram
    from lbml.research.importance import feature_importance, plot_importance

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
    table = feature_importance(model, X, fold_reports)
    if table is not None:
        table.to_csv(folder / "feature_importance.csv")
        plot_importance(table, folder / "feature_importance.png", name)
