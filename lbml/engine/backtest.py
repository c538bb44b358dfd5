"""Run one backtest on nautilus_trader's BacktestEngine.

The venue is a MARGIN account with leverage, maker/taker fees, a latency model (so an order fills no
earlier than the next market event) and lbml's cost modules (borrow interest, slippage). Tick data is
fed as trade ticks (plus quotes when present) and the engine aggregates its own INTERNAL bars; bar
data is fed as EXTERNAL bars. Data is streamed in chunks and closed orders/positions are purged from
the cache between chunks, which keeps the cost per event flat (see the per-chunk timings).
"""

import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lbml.data.frames import InstrumentData, MarketData
from lbml.engine.columns import Rows
from lbml.engine.convert import to_bars, to_quote_ticks, to_trade_ticks
from lbml.engine.costs import CostLedger
from lbml.engine.custom_data import (
    BAR_FLOW_CLIENT_ID,
    DEPTH_CLIENT_ID,
    FUNDING_CLIENT_ID,
    to_bar_flows,
    to_depth_summaries,
    to_funding_rates,
)
from lbml.engine.instruments import infer_precision, make_instrument
from lbml.engine.purge import CachePurger, CachePurgerConfig
from lbml.engine.recorder import RunRecord, RunRecorder, check_invariants, recorder_config
from lbml.engine.signal_actor import SignalActor, SignalActorConfig
from lbml.engine.venue_modules import VenueModules, venue_modules
from lbml.errors import ConfigError
from lbml.features.base import FeatureInput
from lbml.features.pipeline import FeaturePipeline
from lbml.models.base import ModelPlugin
from lbml.models.compiled import accelerate
from lbml.nautilus.backtest import BacktestEngine, add_margin_venue, new_backtest_engine
from lbml.nautilus.clock import engine_now_ns, ms_to_ns
from lbml.nautilus.model import InstrumentId, Venue, bar_type_for, make_price
from lbml.nautilus.trading import Strategy, cash_balance
from lbml.pricing import Pricing, scenario_cost_model
from lbml.scenario import Scenario
from lbml.split import Split

CHUNK_EVENTS = 250_000


@dataclass
class BacktestResult:
    """Everything a report needs, independent of the (purged) engine cache."""

    record: RunRecord
    borrow: CostLedger
    slippage: CostLedger
    starting_balance: float
    final_balance: float
    currency: str
    mode: str
    n_events: int
    n_bars: int
    n_predictions: int
    chunk_seconds: list[tuple[int, float]] = field(default_factory=list)  # (events, seconds)
    run_seconds: float = 0.0
    predictions: Sequence[tuple[int, float]] = field(default_factory=list)  # Rows("qd") from a backtest
    latencies_ns: Sequence[int] = field(default_factory=list)
    signals: dict | None = None  # publisher counters when predictions were published (--publish)
    funding: CostLedger = field(default_factory=CostLedger)
    liquidation: CostLedger = field(default_factory=CostLedger)
    n_liquidations: int = 0
    liquidations: list[dict] = field(default_factory=list)
    leverage_model: str = "none"
    gap_slippage: CostLedger = field(default_factory=CostLedger)
    gas: CostLedger = field(default_factory=CostLedger)
    decisions: list = field(default_factory=list)  # (prediction ts, lbml.sizing.Decision) of every entry
    strategy_report: dict = field(default_factory=dict)  # the strategy's own counters (``report()``), if any
    edge_gate: dict | None = None  # the edge gate's decision (lbml.research.gate), set by the workflow


def load_strategy_class(class_path: str) -> tuple[type, type]:
    """Resolve ``strategies.<module>:Class`` and its ``ClassConfig`` companion.

    A scenario is trusted input (like Qlib's ``module_path``), but it names only classes of the
    ``strategies`` package: nothing else is imported, and the class must be a nautilus ``Strategy``.
    """
    module_name, _, class_name = class_path.partition(":")
    if not (module_name.startswith("strategies.") and class_name.isidentifier()):
        raise ConfigError(f"strategy.class_path: {class_path!r} is not a class of the strategies package "
                          "(strategies.<module>:<Class>)")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
        config_cls = getattr(module, f"{class_name}Config")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"strategy.class_path: cannot load {class_path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"strategy.class_path: {class_path!r} is not a nautilus Strategy")
    return cls, config_cls


def check_strategy_params(scenario: Scenario, source: str) -> None:
    """Raise ``ConfigError`` unless every ``[strategy.params]`` name is a field of the strategy's config class."""
    _, config_cls = load_strategy_class(scenario.strategy.class_path)
    fields = set(getattr(config_cls, "__struct_fields__", ()))
    for key in scenario.strategy.params:
        if key not in fields:
            raise ConfigError(f"{source}: strategy.params.{key}: not a field of {config_cls.__name__}")
    iid = InstrumentId.from_str(f"{scenario.data.symbol}.{scenario.data.venue}")
    try:  # the config's own checks (e.g. HybridFilterConfig.__post_init__), before any data loads
        config_cls(instrument_id=iid, bar_type=bar_type_for(iid, scenario.data.bar_minutes, internal=False),
                   **strategy_config_kwargs(scenario, scenario.data.bar_minutes))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}".splitlines()[0]) from None


def strategy_config_kwargs(scenario: Scenario, bar_minutes: int, ev_margin: float = 0.0, pricing: Pricing | None = None) -> dict:
    """The strategy config's keyword arguments; ``ev_margin`` and ``pricing`` come from the model artifact.

    Without ``pricing`` the strategy assumes every trade ends at its take-profit or stop-loss (the
    textbook bracket), which is optimistic: trained models always carry their pricing.
    """
    s = scenario.strategy
    return {
        "kelly_fraction": s.kelly_fraction,
        "max_leverage": s.max_leverage,
        "max_position_fraction": s.max_position_fraction,
        "min_notional": s.min_notional,
        "stop_loss_pct": s.stop_loss_pct,
        "take_profit_pct": s.take_profit_pct,
        "max_holding_bars": s.max_holding_bars,
        "bar_minutes": bar_minutes,
        "payoff": pricing.payoff if pricing is not None else None,
        "costs": scenario_cost_model(scenario, pricing),
        "sigma_1m": pricing.sigma_1m if pricing is not None else 0.0,
        "probability_shrinkage": s.probability_shrinkage,
        "probability_n_eff": s.probability_n_eff,
        "trailing_stop": s.trailing_stop,
        "ev_margin": ev_margin,
        "max_participation": scenario.venue.max_participation,
    } | {k: tuple(v) if isinstance(v, list) else v for k, v in s.params.items()}  # TOML arrays: frozen configs


def run_backtest(
    scenario: Scenario,
    market: MarketData,
    split: Split,
    pipeline: FeaturePipeline,
    model: ModelPlugin,
    *,
    progress: bool = False,
    chunk_events: int = CHUNK_EVENTS,
    publisher=None,
    compiled_inference: bool = True,
    purge_every_bars: int | None = 1,
    ev_margin: float = 0.0,
    pricing: Pricing | None = None,
    trade: bool = True,
) -> BacktestResult:
    """Backtest ``(split.test_start, split.test_end]``; ``pipeline`` must be warmed up to test_start."""
    if compiled_inference:  # same probabilities, ~50x cheaper per bar (lbml.models.compiled)
        model = accelerate(model)
    venue = _build_venue(scenario, market, split, pipeline)
    components = _add_components(venue, scenario, pipeline, model, ev_margin=ev_margin, pricing=pricing,
                                 trade=trade, publisher=publisher, purge_every_bars=purge_every_bars)
    streams = feed_streams(venue, scenario, market, split)
    replay = replay_streams(venue.engine, streams, chunk_events, components.purger, progress)
    result = _collect_result(venue, components, replay, scenario, trade)
    venue.engine.dispose()
    check_invariants(result.record)
    return result


@dataclass
class BacktestFeed:
    """What the engine is fed: the instruments, bar types and event streams a scenario's backtest
    replays (``plan_feed``), independent of the venue's modules and the components that consume it."""

    instruments: dict
    instrument: Any  # the traded instrument
    symbols: list[str]
    minutes: int  # bar length
    tick_mode: bool
    bar_type: Any
    ref_bar_type: Any
    sends_funding: bool
    sends_bar_flow: bool
    sends_depth: bool


@dataclass(kw_only=True)
class _VenueSetup(BacktestFeed):
    """The engine with its margin venue, venue modules and instruments, and what the data feeds it."""

    engine: BacktestEngine
    venue: Venue
    venue_mods: VenueModules


def plan_feed(scenario: Scenario, market: MarketData, split: Split, inputs) -> BacktestFeed:
    """The instruments and streams of a backtest whose feature pipeline reads ``inputs``."""
    cfg = scenario.data
    traded = market[cfg.symbol]
    tick_mode = traded.has_ticks
    needs_reference = FeatureInput.REFERENCE in inputs and cfg.reference_symbol in market
    symbols = [cfg.reference_symbol] if needs_reference else []
    symbols.append(cfg.symbol)
    instruments = {s: instrument_for(market[s], cfg.venue, scenario, split.test_start) for s in symbols}
    instrument = instruments[cfg.symbol]
    minutes = market.bar_minutes
    return BacktestFeed(
        instruments=instruments,
        instrument=instrument,
        symbols=symbols,
        minutes=minutes,
        tick_mode=tick_mode,
        bar_type=bar_type_for(instrument.id, minutes, internal=tick_mode),
        ref_bar_type=(
            bar_type_for(instruments[cfg.reference_symbol].id, minutes, internal=tick_mode)
            if needs_reference
            else None
        ),
        sends_funding=FeatureInput.FUNDING in inputs and cfg.symbol in market.funding,
        sends_bar_flow=not tick_mode and "taker_buy_volume" in traded.bars,
        sends_depth=FeatureInput.DEPTH in inputs and traded.depth is not None,
    )


def _build_venue(scenario: Scenario, market: MarketData, split: Split, pipeline: FeaturePipeline) -> _VenueSetup:
    """1. The engine, its margin venue with the venue modules (costs, leverage), the instruments."""
    feed = plan_feed(scenario, market, split, pipeline.inputs)
    engine = new_backtest_engine("LBML-001", log_level="ERROR")
    venue = Venue(scenario.data.venue)
    venue_mods = venue_modules(scenario, market, split)
    add_margin_venue(
        engine,
        venue=venue,
        base_currency=feed.instrument.quote_currency,
        starting_balance=scenario.venue.starting_balance,
        leverage=scenario.strategy.max_leverage,
        latency_ns=ms_to_ns(scenario.costs.latency_ms),
        modules=venue_mods.modules,
        bar_execution=not feed.tick_mode,
    )
    for inst in feed.instruments.values():
        engine.add_instrument(inst)
    return _VenueSetup(**vars(feed), engine=engine, venue=venue, venue_mods=venue_mods)


@dataclass
class _Components:
    actor: SignalActor
    recorder: RunRecorder
    strategy: Any
    purger: CachePurger | None
    predictions: Rows


def _add_components(v: _VenueSetup, scenario: Scenario, pipeline: FeaturePipeline, model: ModelPlugin, *,
                    ev_margin: float, pricing: Pricing | None, trade: bool, publisher,
                    purge_every_bars: int | None) -> _Components:
    """2. The signal actor (features → model → prediction), recorder, strategy, publisher and purger."""
    minutes = v.minutes
    predictions = Rows("qd")  # (bar close ns, probability up), 16 bytes per bar
    actor = SignalActor(
        SignalActorConfig(
            component_id="SignalActor",
            instrument_id=v.instrument.id,
            bar_type=v.bar_type,
            reference_bar_type=v.ref_bar_type,
            horizon_bars=scenario.labels.horizon_bars,
            funding=v.sends_funding,
            bar_flow=v.sends_bar_flow,
            depth=v.sends_depth,
        ),
        pipeline,
        model,
        on_prediction=lambda p, _f: predictions.append((p.ts_event, p.probability)),
    )
    lev = v.venue_mods.leverage
    recorder = RunRecorder(recorder_config(scenario, v.instrument.id, v.bar_type, lev.spec))
    strategy_cls, strategy_config_cls = load_strategy_class(scenario.strategy.class_path)
    strategy = strategy_cls(
        strategy_config_cls(
            instrument_id=v.instrument.id,
            bar_type=v.bar_type,
            **strategy_config_kwargs(scenario, minutes, ev_margin, pricing),
            **lev.strategy_kwargs(),
        )
    )
    engine = v.engine
    engine.add_actor(actor)
    engine.add_actor(recorder)
    if trade:  # a closed edge gate: predictions are made and recorded, nothing is traded
        engine.add_strategy(strategy)
    if publisher is not None:  # lbml.signals.SignalPublisher: predictions also go out over ZeroMQ
        from lbml.signals.actor import publisher_actor

        engine.add_actor(publisher_actor(publisher, strategy_config_kwargs(scenario, minutes, ev_margin, pricing)))
    purger = None
    if purge_every_bars is not None:  # flat cost per bar (lbml.engine.purge); results unchanged
        purger = CachePurger(CachePurgerConfig(component_id="CachePurger", bar_type=v.bar_type, every_bars=purge_every_bars))
        engine.add_actor(purger)
    return _Components(actor, recorder, strategy, purger, predictions)


def feed_streams(v: BacktestFeed, scenario: Scenario, market: MarketData, split: Split) -> list["_Stream"]:
    """3. The backtest window's events: trades/quotes or bars, plus funding, kline flow and depth."""
    symbol = scenario.data.symbol
    traded = market[symbol]
    streams = _event_streams(market, v.symbols, v.instruments, split, v.tick_mode, v.bar_type, v.ref_bar_type)
    if v.sends_funding:
        streams.append(_funding_stream(market.funding[symbol], split))
    if v.sends_bar_flow:
        streams.append(_bar_flow_stream(traded.bars, split))
    if v.sends_depth:
        streams.append(_custom_stream(traded.depth, split, to_depth_summaries, DEPTH_CLIENT_ID))
    return streams


@dataclass
class _Replay:
    n_events: int
    chunk_seconds: list[tuple[int, float]]
    run_seconds: float


def replay_streams(engine: BacktestEngine, streams: list["_Stream"], chunk_events: int,
                   purger: CachePurger | None = None, progress: bool = False) -> _Replay:
    """4. Stream the events through the engine in chunks (linear cost), purging the cache between them."""
    n_events = sum(len(s.index) for s in streams)
    boundaries = _chunk_boundaries(streams, chunk_events)
    chunk_seconds: list[tuple[int, float]] = []
    started = time.perf_counter()
    with tqdm(total=n_events, unit="ev", disable=not progress, desc="backtest", leave=False) as bar:
        for lo, hi in zip(boundaries[:-1], boundaries[1:]):
            t0 = time.perf_counter()
            count = 0
            # Custom data (funding) first: at equal timestamps it then precedes bars, as in the replay.
            for stream in sorted(streams, key=lambda s: s.client_id is None):
                data = stream.slice(lo, hi)
                if data:
                    if stream.client_id is None:
                        engine.add_data(data, validate=False, sort=True)
                    else:  # validation registers the custom-data client
                        engine.add_data(data, client_id=stream.client_id, validate=True, sort=True)
                    count += len(data)
            if count:
                engine.run(streaming=True)
                engine.clear_data()
                if purger is not None:
                    purger.purge(engine_now_ns(engine))
            chunk_seconds.append((count, time.perf_counter() - t0))
            bar.update(count)
    engine.end()
    return _Replay(n_events, chunk_seconds, time.perf_counter() - started)


def _collect_result(v: _VenueSetup, c: _Components, replay: _Replay, scenario: Scenario, trade: bool) -> BacktestResult:
    """5. Close the equity curve and gather the record, the cost ledgers and the strategy's report."""
    engine, recorder, strategy = v.engine, c.recorder, c.strategy
    lev, slippage, gaps, gas = v.venue_mods.leverage, v.venue_mods.slippage, v.venue_mods.gaps, v.venue_mods.gas
    account = engine.cache.account_for_venue(v.venue)
    _close_the_curve(recorder.record, engine, v.instrument.id, cash_balance(account))
    recorder.record_end_of_data()  # a position still open is a trade closed by the end of the data
    return BacktestResult(
        record=recorder.record,
        borrow=lev.ledger(lev.borrow),
        slippage=slippage.ledger,
        starting_balance=scenario.venue.starting_balance,
        final_balance=cash_balance(account),
        currency=v.instrument.quote_currency.code,
        mode="ticks" if v.tick_mode else "bars",
        n_events=replay.n_events,
        n_bars=len(recorder.record.equity),
        n_predictions=c.actor.n_predictions,
        chunk_seconds=replay.chunk_seconds,
        run_seconds=replay.run_seconds,
        predictions=c.predictions,
        latencies_ns=c.actor.latencies_ns,
        funding=lev.ledger(lev.funding),
        liquidation=lev.ledger(lev.liquidation),
        n_liquidations=lev.n_liquidations,
        liquidations=list(lev.liquidation.events) if lev.liquidation is not None else [],
        leverage_model=scenario.leverage.model,
        gap_slippage=gaps.ledger,
        gas=gas.ledger,
        decisions=list(getattr(strategy, "decisions", [])) if trade else [],
        strategy_report=strategy.report() if trade and hasattr(strategy, "report") else {},
    )


def _close_the_curve(record: RunRecord, engine: BacktestEngine, instrument_id, balance: float) -> None:
    """Re-mark the last equity point after the run: orders sent on the final bar fill after it."""
    if not record.equity:
        return
    ts, _, _, close = record.equity[-1]
    instrument = engine.cache.instrument(instrument_id)
    mark = make_price(instrument, close)
    unrealized = sum(
        p.unrealized_pnl(mark).as_double() for p in engine.cache.positions_open(instrument_id=instrument_id)
    )
    record.equity[-1] = (ts, balance + unrealized, balance, close)


def instrument_for(data: InstrumentData, venue: str, scenario: Scenario, known_until: pd.Timestamp):
    """The instrument, with price/size precision inferred from data up to ``known_until`` only.

    Precision is instrument metadata fixed before trading starts: inferring it from the backtest
    window would let a later price's decimals change the tick size of earlier fills.
    """
    if data.has_ticks:
        trades = data.trades.loc[:known_until]
        prices, sizes = trades["price"].to_numpy(), trades["size"].to_numpy()
    else:  # a bar's volume is a sum of trade sizes: it has no more decimals than the size step
        bars = data.bars.loc[:known_until]
        prices, sizes = bars["close"].to_numpy(), bars["volume"].to_numpy()
    # The size step: quantities are rounded to it on both legs. A finer step than the market's makes
    # large positions (billions of ADA) exceed what a double holds exactly, and nautilus' position
    # (a double) then leaves a one-step remainder after an exact exit.
    size_precision = min(max(infer_precision(sizes, 8), 3), 8)
    return make_instrument(data.symbol, venue, infer_precision(prices), size_precision, scenario.costs)


@dataclass
class _Stream:
    """One time-sorted data stream, converted to nautilus objects one chunk at a time."""

    index: np.ndarray  # int64 ns timestamps
    frame: pd.DataFrame
    convert: object
    client_id: object = None  # set for custom data without an instrument

    def slice(self, lo: int, hi: int) -> list:
        a, b = np.searchsorted(self.index, [lo, hi], side="right")
        if a == b:
            return []
        return self.convert(self.frame.iloc[a:b])


def _event_streams(market, symbols, instruments, split: Split, tick_mode, bar_type, ref_bar_type) -> list[_Stream]:
    lo, hi = split.test_start, split.test_end
    streams: list[_Stream] = []
    # Bars: the traded symbol's bar first at equal times, so the venue reaches its open (NextOpenFillModule)
    # before a reference bar at the same instant runs the venue.
    for symbol in (symbols if tick_mode else symbols[::-1]):
        data, inst = market[symbol], instruments[symbol]
        if tick_mode:
            trades = data.trades.loc[(data.trades.index > lo) & (data.trades.index <= hi)]
            streams.append(_Stream(trades.index.asi8, trades, lambda f, i=inst: to_trade_ticks(f, i)))
            if data.quotes is not None and len(data.quotes):
                quotes = data.quotes.loc[(data.quotes.index > lo) & (data.quotes.index <= hi)]
                streams.append(_Stream(quotes.index.asi8, quotes, lambda f, i=inst: to_quote_ticks(f, i)))
        else:
            bars = data.bars.loc[(data.bars.index > lo) & (data.bars.index <= hi)]
            bt = bar_type if symbol == symbols[-1] else ref_bar_type
            streams.append(_Stream(bars.index.asi8, bars, lambda f, i=inst, t=bt: to_bars(f, t, i)))
    return streams


def _funding_stream(funding: pd.DataFrame, split: Split) -> _Stream:
    lo, hi = split.test_start, split.test_end
    frame = funding.loc[(funding.index > lo) & (funding.index <= hi)]
    return _Stream(frame.index.asi8, frame, to_funding_rates, FUNDING_CLIENT_ID)


def _custom_stream(frame: pd.DataFrame, split: Split, convert, client_id) -> _Stream:
    frame = frame.loc[(frame.index > split.test_start) & (frame.index <= split.test_end)]
    return _Stream(frame.index.asi8, frame, convert, client_id)


def _bar_flow_stream(bars: pd.DataFrame, split: Split) -> _Stream:
    lo, hi = split.test_start, split.test_end
    frame = bars.loc[(bars.index > lo) & (bars.index <= hi)]
    return _Stream(frame.index.asi8, frame, to_bar_flows, BAR_FLOW_CLIENT_ID)


def _chunk_boundaries(streams: list[_Stream], chunk_events: int) -> list[int]:
    """Time boundaries (exclusive lo, inclusive hi) so each chunk holds ~chunk_events events."""
    main = streams[0].index
    if len(main) == 0:
        return [0, 0]
    per_stream = max(1, chunk_events // len(streams))
    # The first chunk starts before the earliest event of any stream, not of the main one: events of
    # other streams (the traded symbol's ticks, quotes, depth, funding) before the main stream's first
    # event would otherwise never reach the engine.
    cuts = [min(int(s.index[0]) for s in streams if len(s.index)) - 1]
    cuts += [int(main[i]) for i in range(per_stream - 1, len(main), per_stream)]
    if cuts[-1] != int(main[-1]):
        cuts.append(int(main[-1]))
    last = max(int(s.index[-1]) for s in streams if len(s.index))
    cuts[-1] = max(cuts[-1], last)
    return cuts
