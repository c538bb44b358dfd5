"""What every workflow starts from: the scenario's market loaded and split, the model trained, the
feature pipeline warmed up on history.

:func:`prepare` loads the market, splits it (training window | embargo | backtest window) and runs the
look-ahead check; :func:`train_model` trains on the training window; :func:`warm_up` replays the
history before the backtest through a pipeline. The scenario run (:mod:`lbml.workflows.run`),
walk-forward, search, the robustness grid and the paper trader all build on these.
"""

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from lbml.data.frames import MarketData
from lbml.data.provenance import describe_market
from lbml.data.sources import load_market
from lbml.errors import DataError
from lbml.features.guard import LookAheadPolicy, guard_look_ahead
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.plugins import PluginRegistry
from lbml.research.training import TrainResult, funding_for, reference_bars, train
from lbml.research.trials import TrialRegistry
from lbml.scenario import Scenario
from lbml.split import Split, compute_split
from lbml.sweeps import Sweep

TRIALS_FILE = "trials.sqlite"


@dataclass(frozen=True)
class Prepared:
    scenario: Scenario
    market: MarketData
    split: Split
    look_ahead: dict | None = None  # the look-ahead check's result (lbml.features.guard); None: not run

    @cached_property
    def data(self) -> dict:
        """What data the run uses (``lbml.data.provenance``): printed in summaries, ``metrics.json`` ``data``."""
        return describe_market(self.scenario.data, self.market)


def prepare(
    scenario: Scenario,
    registry: PluginRegistry,
    *,
    progress: bool = False,
    look_ahead: LookAheadPolicy | None = None,
) -> Prepared:
    """Load the market and split it; with ``look_ahead``, refuse features that fail the look-ahead check."""
    market = load_market(scenario.data, registry, progress=progress)
    if scenario.data.symbol not in market:
        raise DataError(f"data has no instrument {scenario.data.symbol} (found {', '.join(market.instruments)})")
    bars = market[scenario.data.symbol].bars
    split = compute_split(bars.index, scenario)
    check = None if look_ahead is None else guard_look_ahead(scenario, market, split.train_end, registry, look_ahead)
    return Prepared(scenario, market, split, check)


def train_model(
    prepared: Prepared, registry: PluginRegistry, out_dir: Path, *, trials: TrialRegistry | None = None,
    progress: bool = False,
    sweep: "Sweep | None" = None,
) -> TrainResult:
    return train(prepared.scenario, prepared.market, registry, prepared.split, out_dir, trials=trials,
                 progress=progress, sweep=sweep)


def trial_registry(runs_dir: Path) -> TrialRegistry:
    """The default trial registry: ``trials.sqlite`` in the runs folder."""
    return TrialRegistry(Path(runs_dir) / TRIALS_FILE)


def run_data_hash(prepared: Prepared) -> str:
    """Hash of the traded symbol's bars a run reads: from the first bar (features warm up on all
    history) to the end of its backtest window."""
    from lbml.research.training import data_hash

    return data_hash(prepared.market[prepared.scenario.data.symbol].bars.loc[: prepared.split.test_end])


def warm_up(pipeline: FeaturePipeline, prepared: Prepared) -> int:
    """Replay all history up to the backtest start through the pipeline; return bars replayed."""
    scenario, market, split = prepared.scenario, prepared.market, prepared.split
    data = market[scenario.data.symbol]
    bars = data.bars.loc[: split.test_start]
    ref = reference_bars(scenario, market)
    funding = funding_for(scenario, market)
    clipped = replace(
        data,
        trades=data.trades.loc[: split.test_start] if data.trades is not None else None,
        quotes=data.quotes.loc[: split.test_start] if data.quotes is not None else None,
    )
    compute_features(
        pipeline,
        clipped,
        bars,
        ref.loc[: split.test_start] if ref is not None else None,
        funding.loc[: split.test_start] if funding is not None else None,
    )
    return len(bars)
