"""``lbml paper``: one paper-trading session, started fresh or resumed from its state folder.

Steps: load the scenario's market and split (``workflows.prepare``), take the model (``--model``, the
state folder's own ``model/``, or train one there on the training window), bootstrap the feature
pipeline from history (``workflows.warm_up``), build the node and run it until the feed ends,
``duration_s`` passes or the user interrupts.

A state folder belongs to one scenario, model and feed. Restarting with the same folder replays the
items the previous run had processed (deterministically: see ``lbml.live.feeds``) to rebuild every
piece of engine state, verifies it against the stored checkpoint and continues from there.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from lbml.atomic import write_atomic
from lbml.engine.backtest import instrument_for, load_strategy_class
from lbml.errors import ArtifactError, ConfigError, DataError, InvariantError, LbmlError
from lbml.features.guard import LookAheadPolicy
from lbml.features.pipeline import compute_features
from lbml.live.binance import BinanceFeedConfig, BinanceSource, binance_subscriptions
from lbml.live.drift import DriftConfig, DriftMonitor
from lbml.live.events import JOURNAL_COLUMNS, QUOTE, TRADE, MarketEvent, ZmqSource, first_bars, replay_events
from lbml.live.feed_guard import FeedGuard
from lbml.live.feeds import FeedPlan
from lbml.live.guard import ModelGuard
from lbml.live.dashboard import DashboardConfig, DashboardServer
from lbml.live.metrics import MetricsConfig, PaperMetrics
from lbml.live.node import build_paper_node, paper_custom_inputs, paper_symbols
from lbml.live.model_swap import SwapTargets
from lbml.live.retrain import Retrainer, after_traded_bars, check_retrain, strategy_pricing
from lbml.live.quarantine import QuarantineJournal
from lbml.live.seen_market import LiveMarket, ReplayMarket
from lbml.live.runner import NodeRunner
from lbml.live.state import StateError, StateStore
from lbml.live.status import PaperStatus
from lbml.models.artifact import load_artifact
from lbml.models.compiled import accelerate
from lbml.research.training import scenario_pipeline
from lbml.plugins import PluginRegistry
from lbml.scenario import FeedGuardConfig, Scenario
from lbml.research.gate import gate_decision
from lbml.workflows.prepare import Prepared, prepare, train_model, warm_up

log = logging.getLogger(__name__)

FeedKind = Literal["replay", "zmq", "binance"]


@dataclass(frozen=True)
class PaperOptions:
    feed: FeedKind = "replay"
    speed: float = 1.0
    duration_s: float | None = None
    bars: int | None = None
    endpoint: str = "tcp://127.0.0.1:5560"
    console: bool = True
    stall_after_s: float = 30.0
    model_budget_s: float = 1.0
    drift: DriftConfig = field(default_factory=DriftConfig)
    binance: BinanceFeedConfig = field(default_factory=BinanceFeedConfig)
    ignore_edge_gate: bool = False  # trade a model whose out-of-fold evidence shows no edge (stamped)
    metrics: MetricsConfig | None = None  # serve Prometheus metrics while the session runs
    dashboard: DashboardConfig | None = None  # serve the dashboard (lbml dashboard) while the session runs
    plugins_dir: Path | None = None  # the local plugins folder the registry was loaded with (retrain processes load it too)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ConfigError(f"--speed must be > 0, got {self.speed}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.model_budget_s <= 0:
            raise ConfigError(f"--model-budget must be > 0 seconds, got {self.model_budget_s}")
        if self.bars is not None and self.bars < 1:
            raise ConfigError(f"--bars must be >= 1, got {self.bars}")


def run_paper(
    scenario: Scenario,
    registry: PluginRegistry,
    state_dir: Path,
    options: PaperOptions,
    *,
    model_dir: Path | None = None,
    extra_actors: Sequence[Callable[[PaperStatus], object]] = (),
    prepared: Prepared | None = None,
    look_ahead: LookAheadPolicy | None = None,
) -> dict:
    """Run (or resume) a paper session; return a summary. Raises ``LbmlError`` on user errors.

    ``extra_actors`` are factories called with the session's ``PaperStatus``; the actors they return
    join the node next to lbml's own (e.g. a signal publisher). They receive every ``Prediction``,
    including those a restarted session regenerates while ``status.replaying`` is true: the first
    ``status.last_durable_signal_seq`` predictions of the session were already handled by the
    previous run (predictions are numbered 1, 2, ... in the order they are published).
    ``prepared`` replaces loading the scenario's data (tests use it to perturb the market).
    ``look_ahead`` runs the look-ahead check first; its result is stored in
    the session and reported.
    """
    state_dir = Path(state_dir)
    prepared = prepared or prepare(scenario, registry, look_ahead=look_ahead)
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    symbols = paper_symbols(scenario, prepared.market, pipeline)
    custom = _feed_custom_inputs(scenario, pipeline, options)
    if options.feed == "binance":  # refuse streams Binance cannot give before touching the state folder
        binance_subscriptions(symbols, options.binance, **custom)
    if options.feed == "replay":  # refused before anything is written
        _require_next_open(scenario, prepared, symbols)
    strategy_cls = load_strategy_class(scenario.strategy.class_path)[0]
    retrain = scenario.paper.retrain
    if retrain is not None:
        check_retrain(scenario, strategy_cls, pipeline.warmup_bars, prepared.market.bar_minutes)
    store = StateStore(state_dir)
    try:
        artifact_dir = _model(prepared, registry, state_dir, model_dir)
        artifact = load_artifact(artifact_dir, registry, expected_schema=pipeline.schema())
        if artifact.training_window.end >= prepared.split.test_start:
            raise ArtifactError(f"{artifact_dir}: model was trained up to {artifact.training_window.end}, "
                                f"inside the paper window starting {prepared.split.test_start}")
        currency = instrument_for(
            prepared.market[scenario.data.symbol], scenario.data.venue, scenario, prepared.split.test_start
        ).quote_currency.code
        gate = gate_decision(artifact.manifest.get("metrics", {}), scenario.gate, override=options.ignore_edge_gate,
                             strategy_cls=strategy_cls)
        if not gate.trades:
            raise ArtifactError(gate.line())
        _check_session(store, scenario, artifact.model_id, options, currency)
        store.put("edge_gate", gate.to_dict())  # the report says whether the model traded past a closed gate
        store.put("data", prepared.data)  # what data the session was prepared from (lbml.data.provenance)
        if prepared.look_ahead is not None:
            store.put("look_ahead_check", prepared.look_ahead)
        pipeline.load_fitted_state(artifact.feature_state)
        reference = _training_features(prepared, registry, artifact.feature_state)
        warm_up(pipeline, prepared)

        status = PaperStatus(
            model_id=artifact.model_id, feature_schema_hash=pipeline.schema().hash, ev_margin=artifact.ev_margin,
            pricing=artifact.pricing.to_dict(), edge_gate=gate.status,
        )
        checkpoint = store.get("checkpoint") or {}
        # The backtest's compiled trees (bit-identical probabilities, or the model itself).
        model = accelerate(artifact.model)
        guard = ModelGuard(
            model, options.model_budget_s, status,
            decisions={n: d for n, d in store.rows("model_guard", ("call", "decision"))},
            replay_calls=checkpoint.get("model_calls") or 0,
        )
        drift = DriftMonitor(pipeline.names, reference, options.drift, state_dir, status)
        # Only a replay is paced; a live source arrives at its own pace.
        speed = options.speed if options.feed == "replay" else 0.0
        sources = _sources(prepared, symbols, store, options, custom, status, scenario.paper.feed_guard)
        plan = FeedPlan(sources=sources, speed=speed)
        errors: list[str | LbmlError] = []  # the first one is reported (a full disk: a StorageError)
        runner: NodeRunner | None = None

        def on_error(error: str | LbmlError) -> None:
            errors.append(error)
            runner.request_stop("state error")

        paper = build_paper_node(
            scenario, prepared.market, pipeline, model, split=prepared.split, plan=plan, store=store,
            status=status,
            state_dir=state_dir, extra_actors=[make(status) for make in extra_actors], drift=drift,
            on_error=on_error,
            journal_events=options.feed in ("zmq", "binance"), console=options.console, stall_after_s=options.stall_after_s,
            guard=guard,
        )
        plan.resume_pos = paper.keeper.resume_pos
        retrainer = None
        if retrain is not None:
            targets = SwapTargets(paper.signal_actor, guard, paper.strategy, status, drift,
                                  partial(strategy_pricing, scenario, prepared.market.bar_minutes))
            seen = ReplayMarket(prepared.market) if options.feed == "replay" else \
                LiveMarket(prepared.market, prepared.split.test_start, state_dir)
            retrainer = Retrainer(retrain, scenario=scenario, market=prepared.market, seen=seen, registry=registry,
                                  store=store,
                                  targets=targets, strategy_cls=strategy_cls, model_path=artifact_dir,
                                  resume_pos=paper.keeper.resume_pos, plugins_dir=options.plugins_dir)
            plan.on_item = after_traded_bars(plan.on_item, status, retrainer.on_bar, on_error)
        node = paper.node
        runner = NodeRunner(node)
        plan.on_end = partial(runner.request_stop, "feed ended")
        metrics = PaperMetrics(status, plan) if options.metrics is not None else None
        dashboard = None
        try:
            if metrics is not None:
                paper.keeper.on_signals_committed = metrics.observe_signals
                url = metrics.start(options.metrics)
                log.warning("metrics: %s", url)
                store.put("metrics_url", url)
            if options.dashboard is not None:
                dashboard = DashboardServer(state_dir, options.dashboard)
                threading.Thread(target=dashboard.serve_forever, name="lbml-dashboard", daemon=True).start()
                log.warning("dashboard: %s", dashboard.url)
            if retrainer is not None:
                retrainer.start()
            runner.run(options.duration_s)
        finally:
            if retrainer is not None:
                retrainer.close()
            node.dispose()
            if metrics is not None:
                metrics.stop()
            if dashboard is not None:
                dashboard.shutdown()
                dashboard.close()
        if hasattr(paper.strategy, "report"):  # the strategy's own counters, for `lbml report`
            store.put("strategy_report", paper.strategy.report())
        if options.console:
            print(file=__import__("sys").stderr)
        if paper.recorder.record.breach is not None:  # the node was stopped at the bar that broke the cap
            raise InvariantError(f"{state_dir}: {paper.recorder.record.breach}")
        if errors:
            if isinstance(errors[0], LbmlError):  # it names its file
                raise errors[0]
            raise StateError(f"{state_dir}: {errors[0]}")
        if runner.errors:  # the node stopped, but not cleanly: what was committed is consistent
            raise StateError(f"{state_dir}: {runner.errors[0]}")
        if plan.error is not None:  # everything processed before the failure is committed
            raise DataError(f"{state_dir}: the feed failed after item {plan.pos} (the state keeps every item up to "
                            f"{paper.keeper.committed_pos}): {plan.error}")
        if status.replaying:  # stopped (e.g. --duration) while rebuilding: the state is untouched
            log.warning("%s: stopped before the recovery replay reached the stored checkpoint", state_dir)
        return {
            "state_dir": str(state_dir),
            "resumed_from": paper.keeper.resume_pos,
            "recovery_complete": not status.replaying,
            "items": plan.pos,
            "feed_finished": plan.finished,
            "stop_reason": runner.stop_reason,  # "duration", "feed ended", "interrupted", ...
            "feed_seconds": plan.feed_seconds,
            "bars": status.bars,
            "fills": status.fills,
            "signals": status.last_signal_seq,
            "equity": status.equity,
            "balance": status.balance,
            "position": status.position,
            "degraded": status.degraded,
            "withheld_predictions": len(guard.decisions),
            "quarantined": dict(status.feed_quarantine),
            "strategy_report": store.get("strategy_report"),
            "data": prepared.data,
        } | ({} if prepared.look_ahead is None else {"look_ahead_check": prepared.look_ahead})
    finally:
        store.close()


def _model(prepared: Prepared, registry: PluginRegistry, state_dir: Path, model_dir: Path | None) -> Path:
    if model_dir is not None:
        return Path(model_dir)
    own = state_dir / "model"
    if not own.is_dir():
        log.warning("no --model: training on %s .. %s", prepared.split.train_start, prepared.split.train_end)
        train_model(prepared, registry, own)
    return own


def _check_session(store: StateStore, scenario: Scenario, model_id: str, options: PaperOptions, currency: str) -> None:
    identity = {"scenario": scenario.name, "scenario_hash": scenario.content_hash(), "model_id": model_id,
                "feed": options.feed, "bars": options.bars}
    if options.feed == "binance":  # spot and futures (or testnet) streams must not mix in one session
        identity["binance"] = f"{options.binance.market}{' testnet' if options.binance.testnet else ''}"
    stored = store.get("session")
    if stored is None:
        store.put("session", identity | {"periods_per_year": scenario.report.periods_per_year,
                                         "starting_balance": scenario.venue.starting_balance,
                                         "currency": currency,
                                         "leverage_model": scenario.leverage.model,
                                         "tearsheet": scenario.report.tearsheet})
        write_atomic(store.dir / "scenario.toml", scenario.to_toml())
        return
    for key, value in identity.items():
        if stored.get(key) != value:
            raise StateError(f"{store.dir}: state folder belongs to a session with {key} = {stored.get(key)!r}, "
                             f"not {value!r}")


def _training_features(prepared: Prepared, registry: PluginRegistry, feature_state: dict):
    scenario, market, split = prepared.scenario, prepared.market, prepared.split
    pipeline = scenario_pipeline(scenario, market, registry)
    pipeline.load_fitted_state(feature_state)
    data = market[scenario.data.symbol]
    bars = data.bars.loc[split.train_start: split.train_end]
    from dataclasses import replace

    clipped = replace(
        data,
        trades=data.trades.loc[: split.train_end] if data.trades is not None else None,
        quotes=data.quotes.loc[: split.train_end] if data.quotes is not None else None,
    )
    ref = market[scenario.data.reference_symbol].bars.loc[: split.train_end] \
        if scenario.data.reference_symbol in market else None
    return compute_features(pipeline, clipped, bars, ref).to_numpy()


def _require_next_open(scenario: Scenario, prepared: Prepared, symbols: list[str]) -> None:
    """A replay of bar-only data fills at the next bar's open (``lbml.live.bar_ticks``): the sandbox
    matches a bar's trades as they come, so ``bar_fill = "next_close"`` has no paper equivalent."""
    if scenario.venue.bar_fill != "next_open" and not prepared.market[symbols[-1]].has_ticks:
        raise ConfigError(f"paper replay of bar data fills at the next bar's open; [venue] bar_fill = "
                          f"{scenario.venue.bar_fill!r} is for backtests only")


def _feed_custom_inputs(scenario: Scenario, pipeline, options: PaperOptions) -> dict[str, bool]:
    """Which custom data the feed must carry: what the pipeline uses (as in the backtest) and, from a
    live exchange feed, funding settlements for an ``exchange_margin`` session that pays funding
    (the scenario's stored series ends before a live session's settlements)."""
    custom = paper_custom_inputs(pipeline)
    pays_funding = scenario.leverage.model == "exchange_margin" and scenario.leverage.funding
    if options.feed == "binance" and pays_funding:
        custom["funding"] = True
    return custom


def _sources(
    prepared: Prepared, symbols: list[str], store: StateStore, options: PaperOptions, custom: dict[str, bool],
    status: PaperStatus, guard_config: FeedGuardConfig,
) -> list:
    split = prepared.split
    if options.feed == "replay":
        end = None
        if options.bars is not None:
            bars = prepared.market[prepared.scenario.data.symbol].bars
            after = bars.index[bars.index > split.test_start]
            end = after[min(options.bars, len(after)) - 1]
        return [replay_events(prepared.market, symbols, split.test_start, end, bars=True, **custom)]
    # The feed guard's references start at the last known events: the history before the paper
    # window, then every journaled event as a restart replays it.
    guard = FeedGuard(guard_config, QuarantineJournal(store.dir), status)
    for event in _last_known_events(prepared, symbols):
        guard.observe(event)
    journal = (guard.observe(MarketEvent(*row)) for row in store.iter_rows("journal", JOURNAL_COLUMNS))
    first_ts, _ = store.first_and_last("journal", "ts")
    if options.feed == "binance":
        live = BinanceSource(options.binance, symbols, **custom, guard=guard).events
    else:
        live = ZmqSource(options.endpoint, set(symbols), guard).events
    if options.bars is not None:  # a live session of N bar periods
        period_ns = prepared.market.bar_minutes * 60_000_000_000
        live = partial(first_bars, live, options.bars, period_ns, first_ts)
    return [journal, live]



def _last_known_events(prepared: Prepared, symbols: list[str]) -> list[MarketEvent]:
    """Each symbol's last trade and quote at or before the paper window's start, in time order."""
    start = prepared.split.test_start
    events = []
    for symbol in symbols:
        data = prepared.market[symbol]
        for kind, frame, columns in ((TRADE, data.trades, ("price", "size", "side")),
                                     (QUOTE, data.quotes, ("bid", "ask", "bid_size", "ask_size"))):
            if frame is None:
                continue
            before = frame.loc[:start]
            if len(before):
                row = before.iloc[-1]
                events.append(MarketEvent(kind, symbol, int(before.index[-1].value), *(float(row[c]) for c in columns)))
    return sorted(events, key=lambda e: e.ts)
