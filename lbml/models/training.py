"""Train a scenario's model on its training window and write a safe artifact."""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from lbml.data.frames import MarketData
from lbml.errors import DataError
from lbml.features.pipeline import FeaturePipeline, available_inputs, build_pipeline, compute_features
from lbml.labels import fixed_horizon_labels, label_spec
from lbml.models.artifact import TrainingWindow, save_artifact
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario
from lbml.split import Split

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.2


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


def training_matrix(
    scenario: Scenario, market: MarketData, pipeline: FeaturePipeline, split: Split
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features and labels for the training window only: no data after ``split.train_end`` is read."""
    symbol = scenario.data.symbol
    data = market[symbol]
    bars = data.bars.loc[: split.train_end]
    ref = reference_bars(scenario, market)
    ref = ref.loc[: split.train_end] if ref is not None else None
    funding = funding_for(scenario, market)
    funding = funding.loc[: split.train_end] if funding is not None else None
    pipeline.fit(bars)
    features = compute_features(pipeline, _clip_ticks(data, split.train_end), bars, ref, funding)
    labels = fixed_horizon_labels(bars, scenario.labels)
    X = features.loc[labels.y.index]
    ok = np.isfinite(X.to_numpy()).all(axis=1)
    return X[ok], labels.y[ok], labels.t1[ok]


def _clip_ticks(data, end: pd.Timestamp):
    from dataclasses import replace

    trades = data.trades.loc[:end] if data.trades is not None else None
    quotes = data.quotes.loc[:end] if data.quotes is not None else None
    return replace(data, trades=trades, quotes=quotes)


def train(
    scenario: Scenario,
    market: MarketData,
    registry: PluginRegistry,
    split: Split,
    out_dir: Path,
) -> TrainResult:
    """Fit the model on the training window (early stopping on a purged final block) and save it."""
    pipeline = scenario_pipeline(scenario, market, registry)
    X, y, t1 = training_matrix(scenario, market, pipeline, split)
    if len(y) < 200 or y.nunique() < 2:
        raise DataError(f"training window has too few labelled samples ({len(y)}) to fit a model")
    n_val = max(50, int(len(y) * VALIDATION_FRACTION))
    val_start = X.index[-n_val]
    # Purge: drop training samples whose label resolves inside the validation block, plus an embargo.
    embargo = pd.Timedelta(minutes=market.bar_minutes * scenario.split.embargo_bars)
    fit_mask = (t1 < val_start - embargo).to_numpy()
    val_mask = (X.index >= val_start)
    X_fit, y_fit = X.to_numpy()[fit_mask], y.to_numpy()[fit_mask]
    X_val, y_val = X.to_numpy()[val_mask], y.to_numpy()[val_mask]
    model_cls = registry.model(scenario.model.plugin)
    model = model_cls(**scenario.model.params)
    model.fit(X_fit, y_fit, eval_set=(X_val, y_val))
    p_val = model.predict_proba(X_val)[:, 1]
    metrics = {
        "n_fit": int(fit_mask.sum()),
        "n_validation": int(val_mask.sum()),
        "validation_auc": float(roc_auc_score(y_val, p_val)) if len(np.unique(y_val)) > 1 else float("nan"),
        "validation_logloss": float(log_loss(y_val, p_val, labels=[0, 1])),
        "label_balance": float(y.mean()),
    }
    bars = market[scenario.data.symbol].bars
    artifact = save_artifact(
        out_dir,
        model=model,
        schema=pipeline.schema(),
        feature_state=pipeline.fitted_state(),
        label_spec=label_spec(scenario.labels),
        training_window=TrainingWindow(split.train_start, split.train_end),
        data_hash=data_hash(bars.loc[: split.train_end]),
        scenario_hash=scenario.content_hash(),
        metrics=metrics,
    )
    log.info("trained %s on %d samples: %s", model.name, len(y), metrics)
    return TrainResult(artifact, len(y), X.shape[1], metrics)
