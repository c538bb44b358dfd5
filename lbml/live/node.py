"""Build the paper-trading ``TradingNode``: the backtest's components with live edges.

Inside the node everything is the backtest's: the instrument (same precisions), ``SignalActor``
with the scenario's feature pipeline and model, ``RunRecorder``, the scenario's strategy class with
the same config (leverage model and liquidation guard included), and the same venue
``SimulationModule``s (borrow or lending interest, funding, liquidation penalty, slippage, gap-through, gas). Only the edges
differ: ``FeedDataClient`` instead of the backtest data iterator and ``PaperExecutionClient`` (the
nautilus sandbox with the backtest's order latency) instead of the backtest venue. Bars are EXTERNAL
(built by the feed from trades by event time) where the tick backtest uses INTERNAL ones; that is
configuration, not a branch in any component.

The model can be wrapped in a ``ModelGuard`` (``lbml.live.guard``) for graceful degradation.
``extra_actors`` is the seam for components such as a signal publisher: they are added to the
trader after lbml's actors and before the strategy, and receive the same ``Prediction`` messages.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from lbml.data.frames import MarketData
from lbml.live.status import status_pricing
from lbml.engine.backtest import instrument_for, load_strategy_class, strategy_config_kwargs
from lbml.engine.recorder import RunRecorder, recorder_config
from lbml.engine.signal_actor import SignalActor, SignalActorConfig
from lbml.engine.venue_modules import VenueModules, venue_modules
from lbml.features.base import FeatureInput
from lbml.features.pipeline import FeaturePipeline
from lbml.live.feeds import FeedDataClient, FeedPlan, make_quiesce
from lbml.live.keeper import StateKeeper, StateKeeperConfig
from lbml.live.sandbox import PaperExecClientConfig, PaperExecutionClient
from lbml.live.state import BREACH_KEY, StateStore
from lbml.live.status import PaperStatus, StatusActor, StatusActorConfig
from lbml.models.base import ModelPlugin
from lbml.nautilus.clock import ms_to_ns
from lbml.nautilus.live import (
    LiveExecEngineConfig,
    LiveRiskEngineConfig,
    LoggingConfig,
    TradingNode,
    TradingNodeConfig,
    apply_exec_events_synchronously,
    attach_venue_modules,
    register_data_client,
    register_exec_client,
)
from lbml.nautilus.model import TraderId, Venue, bar_type_for
from lbml.scenario import Scenario
from lbml.split import Split


@dataclass
class PaperNode:
    node: TradingNode
    signal_actor: SignalActor
    recorder: RunRecorder
    strategy: object
    keeper: StateKeeper
    exec_client: PaperExecutionClient
    data_client: FeedDataClient
    venue_modules: VenueModules
    symbols: list[str]


def paper_symbols(scenario: Scenario, market: MarketData, pipeline: FeaturePipeline) -> list[str]:
    """The reference symbol (if the pipeline uses it and the data has it) then the traded one."""
    cfg = scenario.data
    needs_reference = FeatureInput.REFERENCE in pipeline.inputs and cfg.reference_symbol in market
    return ([cfg.reference_symbol] if needs_reference else []) + [cfg.symbol]


def paper_custom_inputs(pipeline: FeaturePipeline) -> dict[str, bool]:
    """Which custom data the feed carries for ``pipeline`` (as ``replay_events`` keyword arguments).

    The same rule as the backtest: funding settlements and depth summaries go to a pipeline that
    has the ``FUNDING`` / ``DEPTH`` inputs (and only when the data has them).
    """
    return {"funding": FeatureInput.FUNDING in pipeline.inputs, "depth": FeatureInput.DEPTH in pipeline.inputs}


def build_paper_node(
    scenario: Scenario,
    market: MarketData,
    pipeline: FeaturePipeline,
    model: ModelPlugin,
    *,
    split: Split,
    plan: FeedPlan,
    store: StateStore,
    status: PaperStatus,
    state_dir: Path,
    extra_actors: Sequence[object] = (),
    drift=None,
    on_error: Callable[[str], None] | None = None,
    journal_events: bool = False,
    console: bool = True,
    stall_after_s: float = 30.0,
    log_level: str = "ERROR",
    guard=None,
) -> PaperNode:
    """Assemble (but do not run) the paper node for a warmed-up ``pipeline`` and ``model``."""
    cfg = scenario.data
    symbols = paper_symbols(scenario, market, pipeline)
    instruments = {s: instrument_for(market[s], cfg.venue, scenario, split.test_start) for s in symbols}
    instrument = instruments[cfg.symbol]
    venue = Venue(cfg.venue)
    minutes = market.bar_minutes
    bar_types = {s: bar_type_for(instruments[s].id, minutes, internal=False) for s in symbols}
    bar_type = bar_types[cfg.symbol]
    ref_bar_type = bar_types[cfg.reference_symbol] if len(symbols) > 1 else None
    quote = instrument.quote_currency

    # A fresh event loop per node: disposing a node closes its loop.
    node = TradingNode(
        loop=asyncio.new_event_loop(),
        config=TradingNodeConfig(
            trader_id=TraderId("PAPER-001"),
            logging=LoggingConfig(log_level=log_level),
            # Orders and fills only come from the in-process paper venue: nothing to reconcile, and
            # in-flight checks would query a venue that answers from memory only.
            exec_engine=LiveExecEngineConfig(reconciliation=False, inflight_check_interval_ms=0),
            # Replays run far faster than real time; throttling would make fills timing-dependent.
            risk_engine=LiveRiskEngineConfig(max_order_submit_rate="1000000/00:00:01",
                                             max_order_modify_rate="1000000/00:00:01"),
            timeout_connection=10.0,
            timeout_reconciliation=1.0,
            timeout_portfolio=1.0,
            timeout_disconnection=2.0,
            timeout_post_stop=0.5,
        ),
    )
    venue_mods = venue_modules(scenario, market, split, bar_execution=False)
    lev = venue_mods.leverage

    def on_breach(message: str) -> None:
        store.put(BREACH_KEY, message)  # at once: the node stops at this bar, lbml report refuses the session
        if on_error is not None:
            on_error(message)

    recorder = RunRecorder(recorder_config(scenario, instrument.id, bar_type, lev.spec), on_breach=on_breach)
    keeper = StateKeeper(
        StateKeeperConfig(component_id="StateKeeper", instrument_id=instrument.id, journal_events=journal_events),
        store, recorder, venue_mods, status, drift=drift, on_error=on_error, guard=guard,
    )
    signal_actor = SignalActor(
        SignalActorConfig(component_id="SignalActor", instrument_id=instrument.id, bar_type=bar_type,
                          reference_bar_type=ref_bar_type, horizon_bars=scenario.labels.horizon_bars,
                          bar_flow=_bar_flow(market[cfg.symbol]), **paper_custom_inputs(pipeline)),
        pipeline,
        guard if guard is not None else model,
        on_prediction=keeper.on_prediction,
    )
    keeper.signal_latencies_ns = signal_actor.latencies_ns
    strategy_cls, strategy_config_cls = load_strategy_class(scenario.strategy.class_path)
    strategy = strategy_cls(
        strategy_config_cls(
            instrument_id=instrument.id, bar_type=bar_type,
            **strategy_config_kwargs(scenario, minutes, status.ev_margin, status_pricing(status)),
            **lev.strategy_kwargs(),
        )
    )
    status_actor = StatusActor(
        StatusActorConfig(component_id="StatusActor", console=console, stall_after_s=stall_after_s),
        status, plan, state_dir, on_error=on_error,
    )
    node.trader.add_actor(signal_actor)
    node.trader.add_actor(recorder)
    node.trader.add_actor(keeper)
    node.trader.add_actor(status_actor)
    for actor in extra_actors:
        node.trader.add_actor(actor)
    node.trader.add_strategy(strategy)
    node.build()

    kernel = node.kernel
    for inst in instruments.values():
        kernel.cache.add_instrument(inst)
    exec_client = PaperExecutionClient(
        node.get_event_loop(), kernel.portfolio, kernel.msgbus, kernel.cache, kernel.clock,
        PaperExecClientConfig(
            venue=cfg.venue,
            starting_balances=[f"{scenario.venue.starting_balance} {quote.code}"],
            base_currency=quote.code,
            oms_type="NETTING",
            account_type="MARGIN",
            default_leverage=Decimal(str(scenario.strategy.max_leverage)),
            # Bar-only data: the bar's trades move both sides of the one-level book, as the backtest's
            # bar steps and next-open fill do (aggressor-side matching would leave a BUY at the ask
            # of the previous close after a lower open).
            trade_execution=market[cfg.symbol].has_ticks,
            bar_execution=False,
            latency_ns=ms_to_ns(scenario.costs.latency_ms),
        ),
    )
    _apply_venue_events_synchronously(kernel)
    register_exec_client(kernel, exec_client, venue)
    attach_venue_modules(kernel, exec_client, venue_mods.modules)
    if lev.funding is not None:  # settlements a live feed announces after the scenario's funding series
        exec_client.on_funding = lev.funding.announce

    data_client = FeedDataClient(
        node.get_event_loop(), kernel.msgbus, kernel.cache, kernel.clock, venue, instruments, bar_types, minutes, plan,
    )
    register_data_client(kernel, data_client, venue)
    plan.quiesce = make_quiesce(node)
    plan.on_item = keeper.on_item
    plan.on_bar = keeper.on_bar
    plan.after_bar = exec_client.on_bar_closed
    plan.venue = exec_client.on_data  # a bar's trades (bar-only data): matched, never published
    trader = node.trader
    plan.running = lambda: trader.is_running
    return PaperNode(node, signal_actor, recorder, strategy, keeper, exec_client, data_client, venue_mods, symbols)


def _bar_flow(data) -> bool:
    """Bar-only data with taker-buy volume: the replay sends it as ``BarFlow``, as the backtest does."""
    return not data.has_ticks and "taker_buy_volume" in data.bars


def _apply_venue_events_synchronously(kernel) -> None:
    """Apply order events as the venue emits them, as the backtest engine does.

    The live execution engine queues events. The paper venue emits a bracket parent's fill and
    then immediately checks its reduce-only children against the cached position, which the queued
    fill has not created yet, so the stop-loss and take-profit would be rejected ("would have
    increased position"). Every order event in the paper node comes from the in-process venue.
    """
    apply_exec_events_synchronously(kernel)
