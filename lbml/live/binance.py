"""Binance public market data as a live paper feed (``lbml paper --feed binance``).

``BinanceSource`` subscribes, through nautilus' own ``BinanceWebSocketClient`` (combined streams,
automatic reconnection and re-subscription), to the public streams of the scenario's symbols and
turns Binance's messages (decoded with nautilus' msgspec schemas) into ``MarketEvent``s, the same
events the replay and ZeroMQ feeds produce. No API key is needed. Per symbol (``paper_symbols``: the
reference symbol when the pipeline uses it, then the traded one):

- ``<symbol>@trade`` (or ``@aggTrade`` with ``agg_trades``) → TRADE; the aggressor is the seller
  when the buyer was the maker (``m``), else the buyer;
- ``<symbol>@bookTicker`` → QUOTE (best bid / ask and their sizes);
- for the traded symbol, when the pipeline has the ``DEPTH`` input, ``<symbol>@depth5@<speed>ms`` →
  DEPTH (base size summed over the best five levels per side, as in the data's depth summaries);
- for the traded symbol on ``usdt_futures``, when the pipeline has the ``FUNDING`` input,
  ``<symbol>@markPrice@1s`` → FUNDING settlements (see ``FundingSettlements``).

Scenario symbols are Binance symbols (``BNBUSDT``); streams use them in lower case and messages are
mapped back by their ``s`` field (the stream name for spot depth, whose messages carry none).

Timestamps are the exchange's, in nanoseconds: the trade time ``T`` of trades, ``T`` of futures
book tickers and depth, the event time ``E`` of mark prices. Spot book tickers and spot depth carry
no time: they are stamped with the receive time moved onto the exchange clock by the smallest
``receive time - exchange time`` seen so far (the fastest delivery), an estimate that is not
earlier than the moment the message existed; messages before the first timed one are dropped
(``n_untimed``). An exchange time later than the receive time plus ``max_ahead_ns`` is refused
before it can move that estimate or release a funding settlement.

Every raw message goes through the session's ``FeedGuard`` (``lbml.live.feed_guard``), as for
``--feed zmq``: size and nesting limits before parsing, malformed messages and implausible events
quarantined (counted by reason, journaled), slightly late events (streams are pushed independently)
stamped at the last event's time, never earlier than they were.

The session journals every event (as for ``--feed zmq``), so a restart replays exactly what was
processed and then continues live. What Binance sent while the client was disconnected (network
loss, restart) is not backfilled: the reconnect is counted (``n_reconnects``) and logged.
"""

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec

from lbml.errors import ConfigError, DataError
from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE, MarketEvent
from lbml.live.feed_guard import MALFORMED, TS_AHEAD_OF_CLOCK, TS_INVALID, FeedGuard, Quarantine
from lbml.nautilus.binance import (
    BinanceAccountType,
    BinanceAggregatedTradeMsg,
    BinanceDataMsgWrapper,
    BinanceFuturesMarkPriceMsg,
    BinanceFuturesTradeMsg,
    BinanceOrderBookMsg,
    BinanceQuoteMsg,
    BinanceSpotOrderBookPartialDepthMsg,
    BinanceSpotTradeMsg,
    BinanceSymbol,
    BinanceWebSocketClient,
    WebSocketClientError,
    binance_ws_base_url,
)
from lbml.nautilus.live import LiveClock

log = logging.getLogger(__name__)

MARKETS = {"spot": BinanceAccountType.SPOT, "usdt_futures": BinanceAccountType.USDT_FUTURES}
DEPTH_SPEED_MS = {"spot": 100, "usdt_futures": 500}  # documented partial-depth update speeds
MARK_PRICE_SPEED_MS = 1000
_MS = 1_000_000


@dataclass(frozen=True)
class BinanceFeedConfig:
    """Where ``--feed binance`` connects.

    Parameters
    ----------
    market
        ``spot`` or ``usdt_futures`` (USD-M perpetuals: the only market with funding rates).
    testnet
        Use Binance's testnet streams instead of the live ones.
    url
        Websocket base URL replacing Binance's (``ws://`` or ``wss://``, without ``/stream``): a
        proxy, or a local server speaking Binance's combined-stream protocol.
    agg_trades
        Subscribe to aggregated trades (one per taker order) instead of raw trades.
    """

    market: str = "spot"
    testnet: bool = False
    url: str | None = None
    agg_trades: bool = False

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ConfigError(f"--binance-market must be one of {', '.join(MARKETS)}, got {self.market!r}")
        if self.url is not None and (not self.url.startswith(("ws://", "wss://")) or self.url.endswith("/")):
            raise ConfigError(f"--binance-url must start with ws:// or wss:// and not end with '/', got {self.url!r}")

    def ws_url(self) -> str:
        """Return the websocket base URL (``url``, or Binance's for the market and network)."""
        return self.url or binance_ws_base_url(MARKETS[self.market], self.testnet)


def binance_subscriptions(
    symbols: list[str], config: BinanceFeedConfig, *, funding: bool, depth: bool
) -> list[tuple[str, str, tuple]]:
    """Return the streams a session needs as ``(stream name, client method, arguments)``.

    ``symbols`` are the reference symbol (if any) then the traded one (the scenario's symbols are
    already Binance's: upper-case letters and digits). Raises ``ConfigError`` when the pipeline
    needs funding rates on the spot market, which has none.
    """
    if funding and config.market != "usdt_futures":
        raise ConfigError(f"--binance-market {config.market}: the scenario's features use funding rates, which "
                          "only usdt_futures streams carry (use --binance-market usdt_futures)")
    trade = "aggTrade" if config.agg_trades else "trade"
    subs = []
    for symbol in symbols:
        name = BinanceSymbol(symbol).lower()
        subs += [(f"{name}@{trade}", "subscribe_agg_trades" if config.agg_trades else "subscribe_trades", (symbol,)),
                 (f"{name}@bookTicker", "subscribe_book_ticker", (symbol,))]
    traded, name = symbols[-1], BinanceSymbol(symbols[-1]).lower()
    if depth:
        speed = DEPTH_SPEED_MS[config.market]
        subs.append((f"{name}@depth5@{speed}ms", "subscribe_partial_book_depth", (traded, 5, speed)))
    if funding:
        subs.append((f"{name}@markPrice@{MARK_PRICE_SPEED_MS // 1000}s", "subscribe_mark_price",
                     (traded, MARK_PRICE_SPEED_MS)))
    return subs


class FundingSettlements:
    """Funding settlements of one USD-M perpetual from its mark-price stream.

    Each mark-price message carries the funding rate ``r`` that applies at the next settlement
    ``T`` (Binance updates it until then). The rate settled at ``T`` is the last one announced for
    ``T``; it is released as a FUNDING event stamped ``T`` just before the first event at or after
    ``T`` (of any stream), so it never precedes the settlement and comes first among events at
    ``T``, in the backtest's order. Settlements the stream did not announce (the client started or
    was disconnected across them) are not invented.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._next: tuple[int, float] | None = None  # (settlement time, announced rate)
        self._settled = 0

    def announce(self, settles_at: int, rate: float) -> None:
        """Record the rate a message announced for the settlement at ``settles_at`` (ns)."""
        if settles_at > self._settled:
            self._next = (settles_at, rate)

    def due(self, ts: int) -> MarketEvent | None:
        """Return the settlement at or before ``ts`` not yet released, if any."""
        if self._next is None or self._next[0] > ts:
            return None
        settles_at, rate = self._next
        self._next, self._settled = None, settles_at
        return MarketEvent(FUNDING, self.symbol, settles_at, rate, 0.0, 0.0)


class BinanceMessages:
    """Binance combined-stream messages → ``MarketEvent``s in non-decreasing time (pure logic).

    Parameters
    ----------
    symbols
        The scenario's symbols, reference first and traded last.
    market
        ``spot`` or ``usdt_futures`` (which schemas the messages follow).
    funding
        Release the traded symbol's funding settlements from its mark-price messages.
    max_ahead_ns
        Exchange times later than the receive time plus this are refused (``TS_AHEAD_OF_CLOCK``).
    """

    def __init__(self, symbols: list[str], market: str, *, funding: bool = False,
                 max_ahead_ns: int = 60_000_000_000) -> None:
        self._symbols = {str(BinanceSymbol(s)): s for s in symbols}
        self._spot = market == "spot"
        self._funding = FundingSettlements(symbols[-1]) if funding else None
        self._max_ahead_ns = max_ahead_ns
        self._offset: int | None = None  # smallest receive time - exchange time seen
        self.n_malformed = 0
        self.n_untimed = 0
        self._wrapper = msgspec.json.Decoder(BinanceDataMsgWrapper)
        self._decoders = {
            "@trade": msgspec.json.Decoder(BinanceSpotTradeMsg if self._spot else BinanceFuturesTradeMsg),
            "@aggTrade": msgspec.json.Decoder(BinanceAggregatedTradeMsg),
            "@bookTicker": msgspec.json.Decoder(BinanceQuoteMsg),
            "@depth5": msgspec.json.Decoder(BinanceSpotOrderBookPartialDepthMsg if self._spot else BinanceOrderBookMsg),
            "@markPrice": msgspec.json.Decoder(BinanceFuturesMarkPriceMsg),
        }

    def feed(self, raw: bytes, received_ns: int) -> list[MarketEvent]:
        """Return the events ``raw`` releases; a message ``decode`` refuses is counted and skipped."""
        try:
            return self.decode(raw, received_ns)
        except Quarantine as why:
            if _worth_logging(self.n_malformed):
                log.warning("binance feed: %s; %d so far", why, self.n_malformed)
            return []

    def decode(self, raw: bytes, received_ns: int) -> list[MarketEvent]:
        """Return the events ``raw`` (received at ``received_ns``, local clock) releases.

        Raises ``Quarantine`` for a malformed message (counted in ``n_malformed``) or an exchange
        time that cannot be right.
        """
        try:
            stream = self._wrapper.decode(raw).stream
            if not stream:  # a reply to SUBSCRIBE, or an error reply
                if b'"error"' in raw:
                    log.warning("binance feed: %s", raw[:200].decode(errors="replace"))
                return []
            parsed = self._parse(stream, raw)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, KeyError, OverflowError) as exc:
            self.n_malformed += 1
            raise Quarantine(MALFORMED, f"binance feed: {exc}") from None
        if parsed is None:
            return []
        ts, event, announced = parsed
        if ts is not None and ts <= 0:
            raise Quarantine(TS_INVALID, f"exchange time {ts}")
        if ts is not None and ts > received_ns + self._max_ahead_ns:
            raise Quarantine(TS_AHEAD_OF_CLOCK, f"exchange time {ts} is {(ts - received_ns) / 1e9:.0f} s after "
                                                "its receive time")
        if ts is None:
            if self._offset is None:
                self.n_untimed += 1
                return []
            ts = received_ns - self._offset
        else:
            self._offset = received_ns - ts if self._offset is None else min(self._offset, received_ns - ts)
        out = []
        if self._funding is not None:
            settled = self._funding.due(ts)
            if settled is not None:
                out.append(settled)
            if announced is not None:
                self._funding.announce(*announced)
        if event is not None:
            out.append(event._replace(ts=ts))
        return out

    def _parse(self, stream: str, raw: bytes) -> tuple[int | None, MarketEvent | None, tuple | None] | None:
        """Return (exchange time or None, event, funding announcement) or None (not ours)."""
        kind = next((k for k in self._decoders if k in stream), None)
        if kind is None:
            raise ValueError(f"unknown stream {stream!r}")
        msg = self._decoders[kind].decode(raw).data
        if kind == "@depth5" and self._spot:
            symbol = self._symbols.get(stream.split("@", 1)[0].upper())
        else:
            symbol = self._symbols.get(msg.s)
        if symbol is None:
            return None
        if kind in ("@trade", "@aggTrade"):
            price, size = _positive(msg.p), _non_negative(msg.q)
            return msg.T * _MS, MarketEvent(TRADE, symbol, 0, price, size, -1.0 if msg.m else 1.0), None
        if kind == "@bookTicker":
            event = MarketEvent(QUOTE, symbol, 0, _positive(msg.b), _positive(msg.a), _non_negative(msg.B),
                                _non_negative(msg.A))
            return (msg.T * _MS if msg.T else None), event, None
        if kind == "@depth5":
            bids, asks = (msg.bids, msg.asks) if self._spot else (msg.b, msg.a)
            event = MarketEvent(DEPTH, symbol, 0, math.fsum(_non_negative(lv.size) for lv in bids),
                                math.fsum(_non_negative(lv.size) for lv in asks), 0.0)
            return (None if self._spot else (msg.T or msg.E) * _MS), event, None
        # @markPrice: no event of its own; it announces the next funding settlement.
        rate = float(msg.r)
        if not math.isfinite(rate):
            raise ValueError(f"funding rate {msg.r!r}")
        return msg.E * _MS, None, (msg.T * _MS, rate)


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"expected a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"expected a non-negative number, got {text!r}")
    return value


def _worth_logging(n: int) -> bool:
    """Log the 1st, 10th, 100th, ... occurrence: a steady problem stays visible without flooding."""
    return n == 10 ** (len(str(n)) - 1)


class BinanceSource:
    """Live events from Binance's public websocket streams (not rewindable: the session journals them).

    Parameters
    ----------
    config
        Market, network and URL.
    symbols
        The scenario's symbols, reference first and traded last (``paper_symbols``).
    funding, depth
        The pipeline uses funding settlements / depth summaries (``paper_custom_inputs``).
    guard
        The session's feed guard (seeded with the session's last events).
    """

    rewindable = False

    def __init__(
        self, config: BinanceFeedConfig, symbols: list[str], *, funding: bool, depth: bool, guard: FeedGuard
    ) -> None:
        self.config = config
        self.subscriptions = binance_subscriptions(symbols, config, funding=funding, depth=depth)
        self.guard = guard
        self.messages = BinanceMessages(symbols, config.market, funding=funding,
                                        max_ahead_ns=int(guard.config.max_ahead_of_clock_s * 1e9))
        self.n_reconnects = 0

    async def events(self) -> AsyncIterator[MarketEvent]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

        def on_message(raw: bytes) -> None:  # called by the websocket client, possibly off the loop
            loop.call_soon_threadsafe(inbox.put_nowait, (time.time_ns(), raw))

        client = BinanceWebSocketClient(
            clock=LiveClock(), base_url=self.config.ws_url(), handler=on_message,
            handler_reconnect=self._on_reconnect, loop=loop,
        )
        try:
            # The first stream opens the connection (/stream?streams=...), the rest are SUBSCRIBE calls.
            try:
                for _, method, args in self.subscriptions:
                    await getattr(client, method)(*args)
            except WebSocketClientError as exc:
                raise DataError(f"--feed binance: cannot connect to {self.config.ws_url()}: {exc}") from None
            guard = self.guard
            while True:
                received_ns, raw = await inbox.get()
                if not guard.wire(raw):
                    continue
                try:
                    events = self.messages.decode(raw, received_ns)
                except Quarantine as why:
                    guard.reject(raw, why)
                    continue
                for event in events:
                    accepted = guard.check(event, raw)
                    if accepted is not None:
                        yield accepted
        finally:
            await client.disconnect()

    async def _on_reconnect(self) -> None:
        self.n_reconnects += 1
        log.warning("binance feed: reconnected (%d so far); messages sent while disconnected are lost",
                    self.n_reconnects)
