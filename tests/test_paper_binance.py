"""The Binance feed's pieces: configuration, subscriptions, message → event conversion, funding
settlements, event ordering and the bar-period limit of live feeds (the end-to-end session against
a local Binance-protocol server is in test_paper_feeds.py)."""

import asyncio
import json

import pytest

from lbml.errors import ConfigError
from lbml.live.binance import BinanceFeedConfig, BinanceMessages, binance_subscriptions
from lbml.live.feed_guard import Quarantine
from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE, MarketEvent, first_bars

# Each test waits on a node, a socket or a subprocess: it fails after 120 s instead of hanging.
pytestmark = pytest.mark.timeout(120)

MS = 1_000_000
HOUR_MS = 3_600_000


def msg(stream: str, **data) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def trade(symbol: str, t_ms: int, price: str = "312.5", qty: str = "0.25", buyer_maker: bool = False) -> bytes:
    return msg(f"{symbol.lower()}@trade", e="trade", E=t_ms, T=t_ms, s=symbol, t=1, p=price, q=qty, m=buyer_maker)


def mark(t_ms: int, next_ms: int, rate: str) -> bytes:
    return msg("bnbusdt@markPrice@1s", e="markPriceUpdate", E=t_ms, s="BNBUSDT", p="300", i="300", P="300",
               r=rate, T=next_ms)


def test_config_and_subscriptions_are_validated_in_one_line():
    with pytest.raises(ConfigError, match="--binance-market must be one of spot, usdt_futures"):
        BinanceFeedConfig(market="options")
    with pytest.raises(ConfigError, match="--binance-url must start with ws://"):
        BinanceFeedConfig(url="http://127.0.0.1:9")
    urls = {BinanceFeedConfig(market=m, testnet=t).ws_url() for m in ("spot", "usdt_futures") for t in (False, True)}
    assert len(urls) == 4 and all(u.startswith("wss://") for u in urls)
    assert BinanceFeedConfig(url="ws://127.0.0.1:9").ws_url() == "ws://127.0.0.1:9"

    futures = BinanceFeedConfig(market="usdt_futures")
    subs = binance_subscriptions(["BTCUSDT", "BNBUSDT"], futures, funding=True, depth=True)
    assert [s for s, _, _ in subs] == ["btcusdt@trade", "btcusdt@bookTicker", "bnbusdt@trade", "bnbusdt@bookTicker",
                                      "bnbusdt@depth5@500ms", "bnbusdt@markPrice@1s"]
    spot = binance_subscriptions(["BNBUSDT"], BinanceFeedConfig(agg_trades=True), funding=False, depth=True)
    assert [s for s, _, _ in spot] == ["bnbusdt@aggTrade", "bnbusdt@bookTicker", "bnbusdt@depth5@100ms"]
    with pytest.raises(ConfigError, match="only usdt_futures streams carry"):
        binance_subscriptions(["BNBUSDT"], BinanceFeedConfig(), funding=True, depth=False)


def test_bad_binance_options_end_the_cli_with_one_line(capsys):
    from lbml.cli import main

    for args in (["--binance-market", "coin_futures"], ["--binance-url", "stream.example:9443"]):
        assert main(["paper", "scenarios/default.toml", "--feed", "binance", "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lbml: error: --binance-") and len(err.strip().splitlines()) == 1


def test_messages_become_events_with_the_aggressor_side_and_exchange_times():
    feed = BinanceMessages(["BTCUSDT", "BNBUSDT"], "usdt_futures")
    assert feed.feed(b'{"result":null,"id":0}', 0) == []  # a SUBSCRIBE reply
    [buy] = feed.feed(trade("BNBUSDT", 1_000, "312.5", "0.25", buyer_maker=False), 5)
    [sell] = feed.feed(trade("BTCUSDT", 1_001, "42000.1", "0.002", buyer_maker=True), 5)
    assert buy == MarketEvent(TRADE, "BNBUSDT", 1_000 * MS, 312.5, 0.25, 1.0)
    assert sell == MarketEvent(TRADE, "BTCUSDT", 1_001 * MS, 42000.1, 0.002, -1.0)  # buyer maker: seller aggressor
    [agg] = feed.feed(msg("bnbusdt@aggTrade", e="aggTrade", E=1_002, s="BNBUSDT", a=7, p="312.6", q="1.5", f=1, l=3,
                          T=1_002, m=True), 5)
    assert agg == MarketEvent(TRADE, "BNBUSDT", 1_002 * MS, 312.6, 1.5, -1.0)
    [quote] = feed.feed(msg("bnbusdt@bookTicker", e="bookTicker", u=9, s="BNBUSDT", b="312.4", B="10.5", a="312.7",
                            A="8", T=1_003, E=1_003), 5)
    assert quote == MarketEvent(QUOTE, "BNBUSDT", 1_003 * MS, 312.4, 312.7, 10.5, 8.0)
    [depth] = feed.feed(msg("bnbusdt@depth5@500ms", e="depthUpdate", E=1_005, T=1_004, s="BNBUSDT", U=1, u=2, pu=0,
                            b=[["312.4", "1.5"], ["312.3", "2.25"]], a=[["312.7", "4"]]), 5)
    assert depth == MarketEvent(DEPTH, "BNBUSDT", 1_004 * MS, 3.75, 4.0, 0.0)
    assert feed.feed(trade("ETHUSDT", 1_005), 5) == []  # not a scenario symbol
    assert feed.n_malformed == 0


def test_a_malformed_message_is_counted_and_skipped():
    feed = BinanceMessages(["BNBUSDT"], "usdt_futures")
    bad = [b"not json", b'{"stream": 5}', msg("bnbusdt@trade", e="trade", s="BNBUSDT"),
           trade("BNBUSDT", 1_000, price="-1"), trade("BNBUSDT", 1_000, qty="abc"),
           msg("bnbusdt@kline_1m", s="BNBUSDT"), mark(1_000, 2_000, "nan")]
    for raw in bad:
        assert feed.feed(raw, 0) == []
    assert feed.n_malformed == len(bad)
    assert feed.feed(trade("BNBUSDT", 1_001), 0) == [MarketEvent(TRADE, "BNBUSDT", 1_001 * MS, 312.5, 0.25, 1.0)]


def test_events_leave_in_time_order_a_late_one_is_stamped_later_never_earlier(tmp_path):
    """Streams are pushed independently: the feed guard stamps a slightly late event at the last
    event's time (never earlier than it was); one later than the clock allows never moves anything."""
    from lbml.live.feed_guard import FeedGuard
    from lbml.live.quarantine import QuarantineJournal
    from lbml.live.status import PaperStatus
    from lbml.scenario import FeedGuardConfig

    feed = BinanceMessages(["BNBUSDT"], "usdt_futures")
    guard = FeedGuard(FeedGuardConfig(), QuarantineJournal(tmp_path), PaperStatus(), clock=lambda: 10_000 * MS)
    guard.observe(MarketEvent(TRADE, "BNBUSDT", 900 * MS, 312.5, 1.0, 1.0))  # the journal's last event

    def admit(raw):
        return [guard.check(e, raw) for e in feed.decode(raw, 10_000 * MS)]

    assert admit(trade("BNBUSDT", 899))[0].ts == 900 * MS  # older than the journal's last event
    assert admit(trade("BNBUSDT", 1_000))[0].ts == 1_000 * MS
    [late] = admit(trade("BNBUSDT", 998, price="311"))
    assert (late.ts, late.a) == (1_000 * MS, 311.0)
    assert guard.restamped == 2 and guard.last_ts == 1_000 * MS
    with pytest.raises(Quarantine, match="ts_ahead_of_clock"):  # refused before it can move anything
        feed.decode(trade("BNBUSDT", 10_000 + 61_000), 10_000 * MS)


def test_spot_book_tickers_are_stamped_on_the_exchange_clock_not_before_they_existed():
    """Spot bookTicker / depth carry no time: receive time minus the fastest delivery seen."""
    feed = BinanceMessages(["BNBUSDT"], "spot")
    ticker = msg("bnbusdt@bookTicker", u=1, s="BNBUSDT", b="312.4", B="1", a="312.7", A="2")
    assert feed.feed(ticker, 10_000 * MS) == [] and feed.n_untimed == 1  # no exchange time seen yet
    feed.feed(trade("BNBUSDT", 10_000), 10_050 * MS)  # delivered in 50 ms (plus clock offset)
    feed.feed(trade("BNBUSDT", 10_100), 10_130 * MS)  # 30 ms: the fastest so far
    # A ticker received at 10_200 existed at the latest at 10_200 - 30 (the fastest delivery) on
    # the exchange clock; a slower delivery makes that an upper bound, never an earlier time.
    [quote] = feed.feed(ticker, 10_200 * MS)
    assert quote == MarketEvent(QUOTE, "BNBUSDT", 10_170 * MS, 312.4, 312.7, 1.0, 2.0)
    [depth] = feed.feed(msg("bnbusdt@depth5@100ms", lastUpdateId=5, bids=[["312.4", "1"], ["312.3", "2"]],
                            asks=[["312.7", "0.5"]]), 10_230 * MS)
    assert depth == MarketEvent(DEPTH, "BNBUSDT", 10_200 * MS, 3.0, 0.5, 0.0)


def test_a_funding_settlement_is_released_at_its_time_with_the_last_announced_rate():
    feed = BinanceMessages(["BTCUSDT", "BNBUSDT"], "usdt_futures", funding=True)
    settle = 8 * HOUR_MS
    NOW = 4 * settle * MS  # received after every exchange time below
    assert feed.feed(mark(settle - 2_000, settle, "0.00010000"), NOW) == []
    assert feed.feed(mark(settle - 1_000, settle, "0.00012000"), NOW) == []  # the estimate moves until then
    # Before the settlement time nothing is released, whatever arrives.
    assert [e.kind for e in feed.feed(trade("BTCUSDT", settle - 1), NOW)] == [TRADE]
    # The first event at or after it releases the settlement first, stamped at the settlement.
    out = feed.feed(trade("BTCUSDT", settle), NOW)
    assert out == [MarketEvent(FUNDING, "BNBUSDT", settle * MS, 0.00012, 0.0, 0.0),
                   MarketEvent(TRADE, "BTCUSDT", settle * MS, 312.5, 0.25, 1.0)]
    # Announcements for a settlement already released change nothing; the next one is announced.
    assert feed.feed(mark(settle + 500, settle, "0.00099000"), NOW) == []
    assert feed.feed(mark(settle + 1_000, 2 * settle, "-0.00003000"), NOW) == []
    assert feed.feed(trade("BNBUSDT", 2 * settle - 1), NOW)[0].kind == TRADE
    # A mark-price message past the settlement releases it by itself (a quiet market).
    assert feed.feed(mark(2 * settle + 1_000, 3 * settle, "0.0001"), NOW) == [
        MarketEvent(FUNDING, "BNBUSDT", 2 * settle * MS, -0.00003, 0.0, 0.0)]
    assert feed.n_malformed == 0


def test_funding_messages_are_ignored_unless_the_pipeline_uses_funding():
    feed = BinanceMessages(["BNBUSDT"], "usdt_futures", funding=False)
    feed.feed(mark(1_000, 2_000, "0.0001"), 0)
    assert [e.kind for e in feed.feed(trade("BNBUSDT", 3_000), 0)] == [TRADE]


def test_a_live_feed_stops_after_n_bar_periods():
    minute = 60 * 10**9
    stamps = [30 * 10**9, 60 * 10**9, 61 * 10**9, 150 * 10**9, 180 * 10**9, 181 * 10**9, 240 * 10**9, 241 * 10**9]
    closed = []

    async def source():
        try:
            for ts in stamps:
                yield MarketEvent(TRADE, "X", ts, 1.0, 1.0, 1.0)
        finally:
            closed.append(True)

    async def collect(**kwargs):
        return [e.ts async for e in first_bars(source, 3, minute, **kwargs)]

    # Periods close at 60, 120 and 180 s; the event after the third close ends the stream.
    assert asyncio.run(collect()) == stamps[:5] and closed == [True]
    # A restarted session counts from its first (journaled) event, not from the first live one:
    # periods close at 120, 180 and 240 s.
    assert asyncio.run(collect(first_ts=61 * 10**9)) == stamps[:7]


def test_an_unreachable_server_is_a_one_line_data_error(tmp_path):
    import socket

    from lbml.errors import DataError
    from lbml.live.binance import BinanceSource
    from lbml.live.feed_guard import FeedGuard
    from lbml.live.quarantine import QuarantineJournal
    from lbml.live.status import PaperStatus
    from lbml.scenario import FeedGuardConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    source = BinanceSource(BinanceFeedConfig(url=f"ws://127.0.0.1:{port}"), ["BNBUSDT"], funding=False, depth=False,
                          guard=FeedGuard(FeedGuardConfig(), QuarantineJournal(tmp_path), PaperStatus()))

    async def first():
        async for event in source.events():
            return event

    with pytest.raises(DataError, match=f"--feed binance: cannot connect to ws://127.0.0.1:{port}"):
        asyncio.run(first())
