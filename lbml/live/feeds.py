"""The paper node's market-data client: events from a source → ticks, quotes and bars on the bus.

``FeedDataClient`` is a nautilus ``LiveMarketDataClient``. It pulls ``MarketEvent``s from a source
(replay, journal, ZeroMQ, Binance), turns them into ``TradeTick``/``QuoteTick`` objects and funding / depth
events into the same custom data the backtest delivers (``FundingRate`` / ``DepthSummary``), builds
EXTERNAL time bars from the trades by event time (``TickBarAggregator``) and hands each item to the
data engine. Bar-only data arrives as bars (published as they are, as the backtest's) preceded by the
trades the traded bar is made of, which go to the paper venue only (``plan.venue``; see
``lbml.live.bar_ticks`` for the order, sizes and the no-look-ahead rule).
After every item it waits until the node is idle (every engine queue empty), so the strategy's
orders reach the paper venue before the next event: processing does not depend on thread or
wall-clock timing, and the same events always give the same orders and fills. That is what lets a
restarted session rebuild its exact state by replaying what it had processed.

Every delivered item (tick, quote or bar) gets a position ``pos`` (1, 2, ...). Items up to
``resume_pos`` are replayed without pacing (recovery); later ones are paced at
``speed`` x real time from the event timestamps. ``on_item(pos, event)`` is called once an item and
everything it caused (signals, orders, fills) has been processed: the state keeper commits there.
A bar item is announced first to ``on_bar(pos, bar)`` (``bar`` as ``TickBarAggregator.due`` gives it):
the keeper stores the bars a session has built with the same commit.

Items are delivered only while the node's trader runs (``FeedPlan.running``). Stopping the node
stops the trader first and disconnects this client only after a grace period: items delivered in
between would reach the venue but none of the stopped actors, and a checkpoint counting them would
claim bars and signals that never happened. So the feed waits for the trader to start, ends when it
stops, and does not count an item the stop interrupted (its effects are replayed on restart).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from lbml.engine.gaps import INSIDE_BAR_TRADE
from lbml.engine.custom_data import BAR_FLOW_TYPE, DEPTH_TYPE, FUNDING_TYPE, BarFlow, DepthSummary, FundingRate
from lbml.errors import LbmlError
from lbml.live.bars import TickBarAggregator
from lbml.live.events import BAR, BAR_FLOW, BAR_TRADE, DEPTH, FUNDING, TRADE, MarketEvent
from lbml.nautilus.clock import minutes_to_ns
from lbml.nautilus.custom_data import custom_data
from lbml.nautilus.live import InstrumentProvider, LiveMarketDataClient
from lbml.nautilus.model import Bar, BarType, ClientId, Instrument, Venue, make_bar, make_quote_tick, make_trade_tick

IDLE_SPINS = 3
STARTUP_POLL_S = 0.01


@dataclass
class FeedPlan:
    """What the data client runs: the event sources (in order), pacing and the commit hook."""

    sources: list[Iterable[MarketEvent] | Callable[[], AsyncIterator[MarketEvent]]]
    speed: float = 1.0
    resume_pos: int = 0
    on_item: Callable[[int, MarketEvent | None], None] | None = None
    on_bar: Callable[[int, tuple], None] | None = None  # a bar item, before its on_item: (symbol, ts, o, h, l, c, v, taker_buy)
    on_end: Callable[[], None] | None = None
    quiesce: Callable[[], object] | None = None
    after_bar: Callable[[int], None] | None = None
    running: Callable[[], bool] | None = None  # the trader is running: items may be delivered
    venue: Callable[[object], None] | None = None  # takes a bar's trades (bar-only data): the paper venue
    pos: int = 0  # items fully processed (delivered while the trader ran, and quiesced)
    last_event_wall: float = field(default_factory=time.monotonic)
    last_event_ts: int = 0
    finished: bool = False
    error: str | None = None  # why the source failed (the session stops; its state stays consistent)
    feed_seconds: float = 0.0  # wall time of the feed loop (first item to the end)


class FeedDataClient(LiveMarketDataClient):
    """Feeds a ``FeedPlan``'s events into the node as ticks, quotes and EXTERNAL bars."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus,
        cache,
        clock,
        venue: Venue,
        instruments: dict[str, Instrument],
        bar_types: dict[str, BarType],
        bar_minutes: int,
        plan: FeedPlan,
    ) -> None:
        provider = InstrumentProvider()
        for instrument in instruments.values():
            provider.add(instrument)
        super().__init__(
            loop=loop, client_id=ClientId(f"FEED-{venue}"), venue=venue, msgbus=msgbus, cache=cache,
            clock=clock, instrument_provider=provider,
        )
        self._instruments = instruments
        self._bar_types = bar_types
        self._aggregator = TickBarAggregator(list(instruments), minutes_to_ns(bar_minutes))
        self.plan = plan
        self._task: asyncio.Task | None = None
        self._trade_seq = 0

    async def _connect(self) -> None:
        for instrument in self._instruments.values():
            self._handle_data(instrument)
        self._task = self._loop.create_task(self._run(), name="lbml-feed")

    async def _disconnect(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # Every item is published whether or not someone subscribed: subscriptions are bookkeeping.
    async def _subscribe(self, command) -> None:
        pass

    async def _subscribe_trade_ticks(self, command) -> None:
        pass

    async def _subscribe_quote_ticks(self, command) -> None:
        pass

    async def _subscribe_bars(self, command) -> None:
        pass

    async def _unsubscribe_trade_ticks(self, command) -> None:
        pass

    async def _unsubscribe_quote_ticks(self, command) -> None:
        pass

    async def _unsubscribe_bars(self, command) -> None:
        pass

    async def _unsubscribe(self, command) -> None:
        pass

    # -- the feed loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        plan = self.plan
        wall0: float | None = None
        ts0 = 0
        started = time.monotonic()
        try:
            while plan.running is not None and not plan.running():  # the trader starts after connect
                await asyncio.sleep(STARTUP_POLL_S)
            bars: list = []  # bars of bar-only data closing at one instant, delivered together
            async for event in self._events():
                if bars and (event.kind != BAR or event.ts != bars[-1][1]):
                    if not await self._deliver_bars(bars):
                        return self._halted(started)
                    bars = []
                if event.kind == BAR:
                    bars.append((event.symbol, event.ts, event.a, event.b, event.c, event.d, event.e, float("nan")))
                    continue
                if not await self._deliver_bars(self._aggregator.due(event.ts)):
                    return self._halted(started)
                if event.kind == TRADE:
                    self._aggregator.on_trade(event.symbol, event.ts, event.a, event.b, event.c)
                if plan.pos + 1 > plan.resume_pos and plan.speed > 0:
                    if wall0 is None:
                        wall0, ts0 = time.monotonic(), event.ts
                    delay = wall0 + (event.ts - ts0) / 1e9 / plan.speed - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if not await self._deliver(self._tick(event), event, to_venue=event.kind == BAR_TRADE):
                    return self._halted(started)
            if not await self._deliver_bars(bars + self._aggregator.flush()):
                return self._halted(started)
        except asyncio.CancelledError:
            plan.feed_seconds = time.monotonic() - started
            raise
        except Exception as exc:  # noqa: BLE001 - a broken feed is reported, the node keeps its state
            plan.error = str(exc) if isinstance(exc, LbmlError) else repr(exc)
            self._log.error(f"feed failed: {plan.error}")
            plan.feed_seconds = time.monotonic() - started
            if plan.on_end is not None:
                plan.on_end()
            return
        plan.finished = True
        plan.feed_seconds = time.monotonic() - started
        if plan.on_end is not None:
            plan.on_end()

    def _halted(self, started: float) -> None:
        """The trader stopped (the node is stopping): end without delivering or counting more."""
        self.plan.feed_seconds = time.monotonic() - started
        self._log.info(f"feed halted after item {self.plan.pos}: the trader stopped")

    def _accepting(self) -> bool:
        return self.plan.running is None or self.plan.running()

    async def _events(self) -> AsyncIterator[MarketEvent]:
        for source in self.plan.sources:
            if callable(source):
                async for event in source():
                    yield event
            else:
                for i, event in enumerate(source):
                    yield event
                    if i % 256 == 255:
                        await asyncio.sleep(0)

    async def _deliver_bars(self, bars: list) -> bool:
        # The backtest runs its venue (cost modules included) once the bars closing at an instant
        # have been handled, so a charge due then is not yet in the traded bar's equity row: the
        # venue runs after the last bar of each close time, not between bars of different symbols.
        for i, bar in enumerate(bars):
            last_at_close = i + 1 == len(bars) or bars[i + 1][1] != bar[1]
            if not await self._deliver(self._bar(bar), None, run_venue=last_at_close, bar=bar):
                return False
        return True

    async def _deliver(self, item, event: MarketEvent | None, run_venue: bool = True, to_venue: bool = False,
                       bar: tuple | None = None) -> bool:
        """Hand ``item`` over (to the venue alone: ``to_venue``) and wait until it is processed; False
        (item not counted) if stopped."""
        plan = self.plan
        if not self._accepting():
            return False
        plan.last_event_wall = time.monotonic()
        plan.last_event_ts = item.ts_event
        if to_venue:
            plan.venue(item)
        else:
            self._handle_data(item)
        if plan.quiesce is not None:
            await plan.quiesce()
        if event is None and run_venue and plan.after_bar is not None and self._accepting():
            plan.after_bar(item.ts_event)
            if plan.quiesce is not None:
                await plan.quiesce()
        if not self._accepting():  # the stop interrupted this item: it was not (fully) processed
            return False
        plan.pos += 1
        if bar is not None and plan.on_bar is not None:
            plan.on_bar(plan.pos, bar)
        if plan.on_item is not None:
            plan.on_item(plan.pos, event)
        return True

    def _tick(self, event: MarketEvent):
        if event.kind == FUNDING:
            return custom_data(FUNDING_TYPE, FundingRate(ts_event=event.ts, ts_init=event.ts, rate=event.a))
        if event.kind == BAR_FLOW:
            return custom_data(BAR_FLOW_TYPE, BarFlow(ts_event=event.ts, ts_init=event.ts, taker_buy_volume=event.a))
        if event.kind == DEPTH:
            return custom_data(
                DEPTH_TYPE, DepthSummary(ts_event=event.ts, ts_init=event.ts, bid_depth=event.a, ask_depth=event.b)
            )
        instrument = self._instruments[event.symbol]
        if event.kind in (TRADE, BAR_TRADE):
            self._trade_seq += 1
            size = max(event.b, 10.0**-instrument.size_precision)
            inside = event.kind == BAR_TRADE and event.d != 1.0  # a bar's high, low or close step
            trade_id = f"{INSIDE_BAR_TRADE if inside else ''}{self._trade_seq}"
            return make_trade_tick(instrument, event.a, size, event.c > 0, trade_id, event.ts)
        return make_quote_tick(instrument, event.a, event.b, event.c, event.d, event.ts)

    def _bar(self, bar) -> Bar:
        symbol, ts, o, h, low, c, v, _ = bar
        return make_bar(self._bar_types[symbol], self._instruments[symbol], o, h, low, c, v, ts)


def make_quiesce(node) -> Callable[[], object]:
    """Return a coroutine function that waits until every engine queue of ``node`` is empty."""
    kernel = node.kernel
    data, risk, exec_ = kernel.data_engine, kernel.risk_engine, kernel.exec_engine

    def busy() -> bool:
        return bool(
            data.data_qsize() or data.cmd_qsize() or data.req_qsize() or data.res_qsize()
            or risk.cmd_qsize() or risk.evt_qsize() or exec_.cmd_qsize() or exec_.evt_qsize()
        )

    async def quiesce() -> None:
        idle = 0
        while idle < IDLE_SPINS:
            await asyncio.sleep(0)
            idle = 0 if busy() else idle + 1

    return quiesce
