"""Market events for paper trading and where they come from.

A source yields ``MarketEvent``s (trades, top-of-book quotes and, for the traded symbol, funding
settlements and 5-level depth summaries) in processing order. Three kinds here (and Binance's
public streams in ``lbml.live.binance``):

- ``replay_events``: the scenario's own data after the backtest start, merged in the order the
  backtest engine processes it (time, then funding, depth, and per symbol trades before quotes).
  Bar-only data: bars, the traded bar preceded by its trades for the venue (``lbml.live.bar_ticks``).
  Deterministic, so a restarted session can rebuild its state by replaying it again.
- ``JournalSource``: events a live session journaled in its state database (for restarts of
  sources that cannot be rewound, such as a ZeroMQ socket).
- ``ZmqSource``: JSON messages from a ZeroMQ SUB socket (format below).

ZeroMQ message format (one JSON object per message, UTF-8)::

    {"type": "trade", "symbol": "BNBUSDT", "ts": 1704067260000000000,
     "price": 312.5, "size": 0.25, "side": 1}          # side: 1 buyer aggressor, -1 seller
    {"type": "quote", "symbol": "BNBUSDT", "ts": 1704067260000000000,
     "bid": 312.49, "ask": 312.51, "bid_size": 10.0, "ask_size": 8.0}
    {"type": "funding", "symbol": "BNBUSDT", "ts": 1704096000000000000,
     "rate": 0.0001}                                   # a settlement: rate per settlement
    {"type": "depth", "symbol": "BNBUSDT", "ts": 1704067260000000000,
     "bid_depth": 812.5, "ask_depth": 640.0}           # base size on the best 5 levels per side
    {"type": "end"}                                    # optional: the stream is over

``ts`` is the event time in integer nanoseconds since the Unix epoch (UTC). Events of one symbol
must arrive in non-decreasing ``ts`` order; at equal ``ts`` the backtest processes funding, then
depth, then trades, then quotes. Funding and depth messages feed the ``funding`` and ``depth``
feature plugins (nautilus custom data ``FundingRate`` / ``DepthSummary``, as in the backtest).
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import NamedTuple

import numpy as np
import pandas as pd

from lbml.data.frames import MarketData
from lbml.errors import DataError
from lbml.live.bar_ticks import bar_trades

TRADE = 0
QUOTE = 1
FUNDING = 2
DEPTH = 3
BAR = 4  # a bar of bar-only data (replay only): open, high, low, close, volume (``e``)
BAR_TRADE = 5  # a trade a bar of bar-only data is made of, for the venue only (``lbml.live.bar_ticks``)
BAR_FLOW = 6  # the traded bar's taker-buy volume (``a``), when the bar data has it (as the backtest's BarFlow)
JOURNAL_COLUMNS = ("kind", "symbol", "ts", "a", "b", "c", "d")


class MarketEvent(NamedTuple):
    """One market event; the meaning of ``a, b, c, d`` depends on ``kind``.

    Trade: price, size, side. Quote: bid, ask, bid size, ask size. Funding: rate. Depth: bid depth,
    ask depth. Bar: open, high, low, close, volume (``e``).
    """

    kind: int
    symbol: str
    ts: int
    a: float
    b: float
    c: float
    d: float = 0.0
    e: float = 0.0


def require_ticks(market: MarketData, symbols: list[str]) -> None:
    """Refuse a replay of bar data: the paper sandbox matches orders on trade ticks only."""
    for symbol in symbols:
        if not market[symbol].has_ticks:
            raise DataError(f"paper replay needs trade ticks for {symbol}; the data has bars only")


def replay_events(
    market: MarketData,
    symbols: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp | None = None,
    *,
    funding: bool = False,
    depth: bool = False,
    bars: bool = False,
) -> Iterator[MarketEvent]:
    """Yield the events of ``symbols`` in ``(start, end]`` in backtest processing order.

    Parameters
    ----------
    market, symbols, start, end
        The data, the symbols (reference first, traded last) and the window.
    funding, depth
        Also yield the traded symbol's funding settlements / depth summaries (when the data has
        them), as the backtest does for a pipeline with the ``FUNDING`` / ``DEPTH`` inputs.
    bars
        Replay a symbol that has bars only as ``BAR`` events at each bar's close, the traded
        symbol's bar preceded by the ``BAR_TRADE``s the venue matches on (``lbml.live.bar_ticks``:
        stamped with the bar's close, before any other event of that instant). Without it, bar-only
        data is refused (the ZeroMQ format carries no bars).
    """
    if not bars:
        require_ticks(market, symbols)
    traded = symbols[-1]
    # The backtest adds custom data (funding, then depth) before ticks and the engine sorts by time
    # with a stable sort, so at equal timestamps funding comes first, then depth, then ticks.
    streams: list[tuple[str, int, pd.DataFrame | None]] = []
    if funding and traded in market.funding:
        streams.append((traded, FUNDING, market.funding[traded]))
    if depth and market[traded].depth is not None:
        streams.append((traded, DEPTH, market[traded].depth))
    for symbol in symbols:
        data = market[symbol]
        if data.has_ticks:
            streams += [(symbol, TRADE, data.trades), (symbol, QUOTE, data.quotes)]
        else:  # the traded bar's trades first (stamped 1 ns earlier), then every bar at its close
            if symbol == traded:
                streams.insert(0, (symbol, BAR_TRADE, data.bars))
                if "taker_buy_volume" in data.bars:  # custom data: before the bars of its time
                    flow = data.bars["taker_buy_volume"]
                    streams.insert(1, (symbol, BAR_FLOW, data.bars.loc[np.isfinite(flow.to_numpy(dtype=np.float64))]))
            streams.append((symbol, BAR, data.bars))
    stamps, order, rows = [], [], []
    frames = []
    for symbol, kind, frame in streams:
        if frame is None or not len(frame):
            continue
        mask = frame.index > start
        if end is not None:
            mask &= frame.index <= end
        window = frame.loc[mask]
        frames.append((symbol, kind, window))
        n = len(window)
        stamps.append(window.index.asi8)
        order.append(np.full(n, len(frames) - 1, dtype=np.int64))
        rows.append(np.arange(n, dtype=np.int64))
    if not frames:
        return
    ts = np.concatenate(stamps)
    stream = np.concatenate(order)
    row = np.concatenate(rows)
    perm = np.lexsort((stream, ts))
    columns = []
    for symbol, kind, window in frames:
        if kind == TRADE:
            columns.append((window["price"].to_numpy(), window["size"].to_numpy(),
                            window["side"].to_numpy(), None))
        elif kind == FUNDING:
            columns.append((window["rate"].to_numpy(), None, None, None))
        elif kind == DEPTH:
            columns.append((window["bid_depth"].to_numpy(), window["ask_depth"].to_numpy(), None, None))
        elif kind == BAR_FLOW:
            columns.append((window["taker_buy_volume"].to_numpy(), None, None, None))
        elif kind in (BAR, BAR_TRADE):
            columns.append(tuple(window[k].to_numpy() for k in ("open", "high", "low", "close", "volume")))
        else:
            columns.append((window["bid"].to_numpy(), window["ask"].to_numpy(),
                            window["bid_size"].to_numpy(), window["ask_size"].to_numpy()))
    last: dict[str, float] = {}  # a bar's trades follow the previous bar's last price (nautilus' steps)
    for i in perm:
        f = int(stream[i])
        r = int(row[i])
        symbol, kind, _ = frames[f]
        if kind == BAR_TRADE:
            o, h, lo, cl, v = (float(x[r]) for x in columns[f])
            trades, last[symbol] = bar_trades(o, h, lo, cl, v, last.get(symbol))
            for k, (price, size, side) in enumerate(trades):  # the open flagged (d = 1): see bar_ticks
                yield MarketEvent(BAR_TRADE, symbol, int(ts[i]), price, size, side, 1.0 if k == 0 else 0.0)
            continue
        if kind == BAR:
            o, h, lo, cl, v = (float(x[r]) for x in columns[f])
            yield MarketEvent(BAR, symbol, int(ts[i]), o, h, lo, cl, v)
            continue
        a, b, c, d = columns[f]
        if kind == BAR_FLOW:
            yield MarketEvent(BAR_FLOW, symbol, int(ts[i]), float(a[r]), 0.0, 0.0)
            continue
        if kind == TRADE:
            yield MarketEvent(TRADE, symbol, int(ts[i]), float(a[r]), float(b[r]), float(c[r]))
        elif kind == FUNDING:
            yield MarketEvent(FUNDING, symbol, int(ts[i]), float(a[r]), 0.0, 0.0)
        elif kind == DEPTH:
            yield MarketEvent(DEPTH, symbol, int(ts[i]), float(a[r]), float(b[r]), 0.0)
        else:
            yield MarketEvent(QUOTE, symbol, int(ts[i]), float(a[r]), float(b[r]), float(c[r]), float(d[r]))


def encode_event(event: MarketEvent) -> bytes:
    """Render an event in the documented ZeroMQ JSON format."""
    if event.kind in (BAR, BAR_TRADE, BAR_FLOW):
        raise DataError("the ZeroMQ feed format carries trades, quotes, funding and depth, not bars")
    if event.kind == TRADE:
        msg = {"type": "trade", "symbol": event.symbol, "ts": event.ts,
               "price": event.a, "size": event.b, "side": int(event.c)}
    elif event.kind == FUNDING:
        msg = {"type": "funding", "symbol": event.symbol, "ts": event.ts, "rate": event.a}
    elif event.kind == DEPTH:
        msg = {"type": "depth", "symbol": event.symbol, "ts": event.ts,
               "bid_depth": event.a, "ask_depth": event.b}
    else:
        msg = {"type": "quote", "symbol": event.symbol, "ts": event.ts,
               "bid": event.a, "ask": event.b, "bid_size": event.c, "ask_size": event.d}
    return json.dumps(msg, separators=(",", ":")).encode()


END_OF_STREAM = json.dumps({"type": "end"}).encode()


def decode_event(payload: bytes) -> MarketEvent | None:
    """Parse one message; return None for the end-of-stream marker; raise ``DataError`` if malformed."""
    try:
        msg = json.loads(payload)
        kind = msg["type"]
        if kind == "end":
            return None
        symbol, ts = str(msg["symbol"]), int(msg["ts"])
        if kind == "trade":
            side = int(msg["side"])
            if side not in (1, -1):
                raise ValueError(f"side must be 1 or -1, got {side}")
            return MarketEvent(TRADE, symbol, ts, float(msg["price"]), float(msg["size"]), float(side))
        if kind == "quote":
            return MarketEvent(QUOTE, symbol, ts, float(msg["bid"]), float(msg["ask"]),
                               float(msg["bid_size"]), float(msg["ask_size"]))
        if kind == "funding":
            return MarketEvent(FUNDING, symbol, ts, float(msg["rate"]), 0.0, 0.0)
        if kind == "depth":
            return MarketEvent(DEPTH, symbol, ts, float(msg["bid_depth"]), float(msg["ask_depth"]), 0.0)
        raise ValueError(f"unknown type {kind!r}")
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise DataError(f"zmq feed: malformed message {payload[:120]!r}: {exc}") from None


POLL_S = 0.001


class ZmqSource:
    """Events from a ZeroMQ SUB socket connected to ``endpoint`` (documented JSON format).

    Every message goes through ``guard`` (``lbml.live.feed_guard``): too big or too deep to parse,
    malformed or implausible messages are quarantined, never delivered. Messages of other symbols
    are skipped without being counted.
    """

    rewindable = False

    def __init__(self, endpoint: str, symbols: set[str], guard) -> None:
        self.endpoint = endpoint
        self.symbols = symbols
        self.guard = guard
        self._sock = None

    async def events(self) -> AsyncIterator[MarketEvent]:
        import zmq

        # A plain socket polled without blocking: independent of how the node's event loop
        # integrates file descriptors, at the cost of up to POLL_S of added latency when idle.
        self._sock = zmq.Context.instance().socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.connect(self.endpoint)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        guard = self.guard
        try:
            while True:
                try:
                    payload = self._sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    await asyncio.sleep(POLL_S)
                    continue
                if not guard.wire(payload):
                    continue
                try:
                    event = decode_event(payload)
                except DataError as exc:
                    guard.reject_malformed(payload, str(exc))
                    continue
                if event is None:
                    return
                if event.symbol in self.symbols:
                    accepted = guard.check(event, payload)
                    if accepted is not None:
                        yield accepted
        finally:
            self._sock.close(0)


async def first_bars(
    source: Callable[[], AsyncIterator[MarketEvent]], bars: int, period_ns: int, first_ts: int | None = None
) -> AsyncIterator[MarketEvent]:
    """Yield ``source``'s events up to the close of the ``bars``-th bar period, then stop.

    Periods are the aggregator's (right-closed, aligned to the epoch); the first one holds
    ``first_ts`` (the session's first event, e.g. from its journal) or else the first event. The
    stream ends at the first event after the last close, which is not yielded: a live session with
    ``--bars N`` processes the events of N bar periods, as a replay of N bars does.
    """
    end = None if first_ts is None else -(-first_ts // period_ns) * period_ns + (bars - 1) * period_ns
    async with aclosing(source()) as events:
        async for event in events:
            if end is None:
                end = -(-event.ts // period_ns) * period_ns + (bars - 1) * period_ns
            if event.ts > end:
                return
            yield event

