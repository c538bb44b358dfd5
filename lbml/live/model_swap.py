"""Put a retrained model into a running paper session, between two bars, all at once.

What a model carries is swapped together: the model itself (behind the session's ``ModelGuard``),
the feature pipeline with the model's fitted feature state, the EV margin and trade pricing of its
manifest (the strategy's rule), the drift monitor's reference (the new training window's features)
and the status' model identity.

The new pipeline is not the old one with new parameters: loading a fitted state resets a plugin's
running state. ``prepare_swap`` builds it by replaying the market from the candidate's window start
up to the bar after which the swap takes effect (``lbml.research.training.window_inputs``, the very
inputs training read, so the rows up to the window's end are the candidate's training features).
The feed delivers every event up to a traded bar's close before that bar, so after the replay the
new pipeline has consumed exactly what the live one has, and the next bar is computed by it.
``prepare_swap`` does the work that can fail; ``apply`` only assigns.

The replay is the expensive part (a window's features), so a session prepares the swap off its bar
loop (``lbml.live.retrain``: the job's thread, up to the last bar committed when the training
process ended) and the bar loop only advances it over the bars committed since (``catch_up``, the
same events in the same order: a replay up to a bar's close continued by the events after it is one
replay of both).
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lbml.data.frames import MarketData
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.live.drift import DriftReference, drift_reference
from lbml.models.artifact import LoadedArtifact, load_artifact
from lbml.models.compiled import accelerate
from lbml.research.training import funding_for, reference_bars, scenario_pipeline, window_inputs
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario
from lbml.split import Split


@dataclass(frozen=True)
class PreparedSwap:
    artifact: LoadedArtifact
    pipeline: FeaturePipeline
    model: object
    reference: np.ndarray  # the candidate's training-window features (drift reference)
    drift_reference: DriftReference  # the same, prepared for the drift monitor
    until: pd.Timestamp  # the pipeline has consumed every event up to this bar's close


@dataclass
class SwapTargets:
    """The session's components a model swap changes (passed explicitly by the session)."""

    signal_actor: object  # lbml.engine.signal_actor.SignalActor
    guard: object  # lbml.live.guard.ModelGuard
    strategy: object  # the scenario's strategy; ``reprice`` when it trades the model
    status: object  # lbml.live.status.PaperStatus
    drift: object | None  # lbml.live.drift.DriftMonitor
    strategy_kwargs: object  # (ev_margin, pricing) -> the strategy's pricing keyword arguments


def load_candidate(path: Path, scenario: Scenario, market: MarketData, registry: PluginRegistry) -> LoadedArtifact:
    """Load and verify a retrained artifact (hashes, manifest integrity, the session's feature schema)."""
    return load_artifact(path, registry, expected_schema=scenario_pipeline(scenario, market, registry).schema())


def prepare_swap(
    artifact: LoadedArtifact, scenario: Scenario, market: MarketData, registry: PluginRegistry, until: pd.Timestamp,
) -> PreparedSwap:
    """Build the candidate's pipeline replayed from its window's start up to bar ``until``."""
    pipeline = scenario_pipeline(scenario, market, registry)
    window = artifact.training_window
    pipeline.load_fitted_state(artifact.feature_state)
    inputs = window_inputs(scenario, market, Split(window.start, until, until, until))
    features = compute_features(pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding)
    reference = features.loc[: window.end].to_numpy()
    return PreparedSwap(artifact, pipeline, accelerate(artifact.model), reference, drift_reference(reference), until)


def catch_up(swap: PreparedSwap, scenario: Scenario, market: MarketData, until: pd.Timestamp) -> PreparedSwap:
    """Advance ``swap``'s pipeline over the events after ``swap.until`` up to bar ``until``."""
    since = swap.until
    if until <= since:
        return swap
    data = market[scenario.data.symbol]

    def after(frame: pd.DataFrame | None) -> pd.DataFrame | None:  # sorted indexes: two binary searches
        if frame is None:
            return None
        index = frame.index
        return frame.iloc[index.searchsorted(since, side="right"): index.searchsorted(until, side="right")]

    ref = reference_bars(scenario, market)
    clipped = replace(data, trades=after(data.trades), quotes=after(data.quotes), depth=after(data.depth))
    compute_features(swap.pipeline, clipped, after(data.bars), after(ref), after(funding_for(scenario, market)),
                     reset=False)
    return replace(swap, until=until)


def apply_swap(swap: PreparedSwap, targets: SwapTargets) -> None:
    """Make ``swap`` the session's model (assignments only: call between two items)."""
    artifact = swap.artifact
    targets.signal_actor.replace_pipeline(swap.pipeline)
    targets.guard.model = swap.model
    reprice = getattr(targets.strategy, "reprice", None)
    if reprice is not None:
        reprice(**targets.strategy_kwargs(artifact.ev_margin, artifact.pricing))
    if targets.drift is not None:
        targets.drift.rebase(swap.drift_reference)
    status = targets.status
    status.model_id = artifact.model_id
    status.ev_margin = artifact.ev_margin
    status.pricing = artifact.pricing.to_dict()
