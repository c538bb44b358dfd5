"""Feed pieces of paper trading: event-time bars, the ZeroMQ message format and feed, drift tests."""

import dataclasses
import json
import socket
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest

from lbml.data.frames import bars_from_trades
from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.errors import DataError
from lbml.live.bars import TickBarAggregator
from lbml.live.drift import DriftConfig, DriftMonitor
from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE, MarketEvent, decode_event, encode_event, replay_events

from .conftest import without_calibration, without_edge_gate

# Each test waits on a node, a socket or a subprocess: it fails after 300 s instead of hanging.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticMarketConfig(days=1, seed=3))


def test_event_time_bars_equal_the_training_bars(market):
    """The feed's bars are the bars features were trained on (same right-closed convention)."""
    trades = market["BNBUSDT"].trades.iloc[:5000]
    agg = TickBarAggregator(["BNBUSDT"], 60_000_000_000)
    bars = []
    for ts, price, size, side in zip(trades.index.asi8, trades["price"], trades["size"], trades["side"]):
        bars += agg.due(int(ts))
        agg.on_trade("BNBUSDT", int(ts), float(price), float(size), float(side))
    bars += agg.flush()
    columns = ["open", "high", "low", "close", "volume", "taker_buy_volume"]
    got = pd.DataFrame([b[2:] for b in bars], columns=columns, index=pd.to_datetime([b[1] for b in bars], utc=True))
    want = bars_from_trades(trades)[columns]
    assert len(got) == len(want) > 100
    np.testing.assert_array_equal(got.index.asi8, want.index.asi8)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)


def test_a_trade_on_the_close_belongs_to_the_closing_bar():
    agg = TickBarAggregator(["X"], 60)
    agg.on_trade("X", 59, 1.0, 1.0)
    agg.on_trade("X", 60, 2.0, 1.0)
    assert agg.due(60) == []
    [(symbol, close_ts, o, h, low, c, v, taker_buy)] = agg.due(61)
    assert (symbol, close_ts, o, h, low, c, v, taker_buy) == ("X", 60, 1.0, 2.0, 1.0, 2.0, 2.0, 0.0)


def test_replay_order_is_time_then_trades_before_quotes(market):
    events = list(replay_events(market, ["BNBUSDT"], market["BNBUSDT"].trades.index[100]))
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps)
    assert {e.kind for e in events} == {TRADE, QUOTE}


def test_replay_merges_funding_and_depth_in_backtest_order(market):
    """Funding and depth of the traded symbol join the replay; at equal times the backtest's order
    (funding, depth, trades, quotes) holds; without the inputs they are left out."""
    import dataclasses

    data = market["BNBUSDT"]
    start = data.trades.index[100]
    tie = data.trades.index[2000]  # a funding settlement and a depth snapshot at a trade's instant
    funding = pd.concat([market.funding["BNBUSDT"], pd.DataFrame({"rate": [0.0002]}, index=[tie])]).sort_index()
    depth = pd.concat([data.depth, pd.DataFrame({"bid_depth": [5.0], "ask_depth": [6.0]}, index=[tie])]).sort_index()
    tied = dataclasses.replace(market, instruments={**market.instruments, "BNBUSDT": dataclasses.replace(data, depth=depth)},
                               funding={**market.funding, "BNBUSDT": funding})
    events = list(replay_events(tied, ["BNBUSDT"], start, funding=True, depth=True))
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    got = {k: [e for e in events if e.kind == k] for k in (FUNDING, DEPTH)}
    assert [e.ts for e in got[FUNDING]] == list(funding.index[funding.index > start].asi8)
    assert [e.a for e in got[FUNDING]] == list(funding["rate"][funding.index > start])
    assert len(got[DEPTH]) == (depth.index > start).sum() > 1000
    at_tie = [e.kind for e in events if e.ts == tie.value]
    assert at_tie[:2] == [FUNDING, DEPTH] and at_tie[2] == TRADE and (at_tie[2:] == sorted(at_tie[2:]))
    assert [e for e in events if e.kind in (TRADE, QUOTE)] == list(replay_events(tied, ["BNBUSDT"], start))


def test_zmq_message_roundtrip_and_malformed_messages():
    trade = MarketEvent(TRADE, "BNBUSDT", 1_704_067_260_000_000_123, 312.5, 0.25, -1.0)
    quote = MarketEvent(QUOTE, "BNBUSDT", 1_704_067_260_000_000_124, 312.49, 312.51, 10.0, 8.0)
    assert decode_event(encode_event(trade)) == trade
    assert decode_event(encode_event(quote)) == quote
    funding = MarketEvent(FUNDING, "BNBUSDT", 1_704_096_000_000_000_000, 0.0001, 0.0, 0.0)
    depth = MarketEvent(DEPTH, "BNBUSDT", 1_704_067_265_000_000_000, 812.5, 640.0, 0.0)
    assert decode_event(encode_event(funding)) == funding
    assert decode_event(encode_event(depth)) == depth
    assert decode_event(b'{"type": "funding", "symbol": "X", "ts": 1, "rate": 0.001}').a == 0.001
    assert decode_event(b'{"type": "end"}') is None
    for bad in (b"not json", b'{"type": "trade", "symbol": "X"}', b'{"type": "trade", "symbol": "X", "ts": 1, '
                b'"price": 1, "size": 1, "side": 0}', b'{"type": "book"}',
                b'{"type": "depth", "symbol": "X", "ts": 1, "bid_depth": 1}'):
        with pytest.raises(DataError, match="zmq feed: malformed message"):
            decode_event(bad)


def test_drift_monitor_flags_a_shifted_distribution_only(tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2000, 4))
    config = DriftConfig(every_bars=200, window=200, alpha=0.01)
    same = DriftMonitor(("a", "b", "c", "d"), reference, config, tmp_path)
    for i, row in enumerate(rng.normal(size=(200, 4))):
        same.add(i, row)
    [(_, n, drifted, share, flagged, _)] = same.take_reports()
    assert n == 4 and not flagged
    shifted = DriftMonitor(("a", "b", "c", "d"), reference, config, tmp_path)
    live = rng.normal(size=(200, 4))
    live[:, :2] += 1.0
    for i, row in enumerate(live):
        shifted.add(i, row)
    [(_, n, drifted, share, flagged, detail)] = shifted.take_reports()
    assert drifted == 2 and share == 0.5 and flagged
    assert (tmp_path / "drift.json").is_file()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 3-day scenario and its trained model, shared by the node tests of this module."""
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario
    from lbml.workflows.prepare import prepare, train_model

    registry = load_registry()
    scenario = without_edge_gate(without_calibration(load_scenario("scenarios/default.toml").with_data(days=3)))
    model = tmp_path_factory.mktemp("feeds") / "model"
    train_model(prepare(scenario, registry), registry, model)
    return scenario, registry, model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zmq_feed_gives_the_replay_signals(small, tmp_path):
    """`lbml feed serve` on a loopback socket → `--feed zmq` paper session == the replay session."""
    from lbml.live.serve import serve_feed
    from lbml.live.session import PaperOptions, run_paper

    scenario, registry, model = small
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    sent = []
    server = threading.Thread(
        target=lambda: sent.append(serve_feed(scenario, registry, endpoint, speed=1e9, bars=40, wait_s=60.0)))
    server.start()
    try:
        zmq_summary = run_paper(scenario, registry, tmp_path / "zmq", PaperOptions(
            feed="zmq", endpoint=endpoint, bars=None, console=False, duration_s=120), model_dir=model)
    finally:
        server.join()
    replay_summary = run_paper(scenario, registry, tmp_path / "replay",
                               PaperOptions(speed=1e9, bars=40, console=False), model_dir=model)
    # Items: every message sent plus 40 bars of each symbol (the traded one and the reference).
    assert zmq_summary["feed_finished"] and zmq_summary["items"] == replay_summary["items"] == sent[0] + 2 * 40
    rows = {}
    for name in ("zmq", "replay"):
        db = sqlite3.connect(tmp_path / name / "state.sqlite")
        rows[name] = (db.execute("SELECT seq, ts, probability FROM signals").fetchall(),
                      db.execute("SELECT ts, side, quantity, price FROM fills").fetchall())
        db.close()
    assert len(rows["zmq"][0]) == 40 and rows["zmq"] == rows["replay"]
    db = sqlite3.connect(tmp_path / "zmq" / "state.sqlite")
    assert db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == sent[0]  # journaled for restarts
    kinds = {k for (k,) in db.execute("SELECT DISTINCT kind FROM journal")}
    assert kinds == {TRADE, QUOTE, DEPTH}  # depth summaries travel (no funding settlement in 40 bars)
    db.close()

    # Restart: the journal rebuilds (and verifies) the session; the new stream only says "end".
    import zmq

    from lbml.live.events import END_OF_STREAM

    def end_only():
        sock = zmq.Context.instance().socket(zmq.XPUB)
        sock.bind(endpoint)
        if sock.poll(60_000, zmq.POLLIN):
            sock.recv()
            sock.send(END_OF_STREAM)
        sock.close(linger=1000)

    server = threading.Thread(target=end_only)
    server.start()
    try:
        again = run_paper(scenario, registry, tmp_path / "zmq", PaperOptions(
            feed="zmq", endpoint=endpoint, console=False, duration_s=120), model_dir=model)
    finally:
        server.join()
    assert again["recovery_complete"] and again["resumed_from"] == again["items"] == zmq_summary["items"]
    db = sqlite3.connect(tmp_path / "zmq" / "state.sqlite")
    assert (db.execute("SELECT seq, ts, probability FROM signals").fetchall(),
            db.execute("SELECT ts, side, quantity, price FROM fills").fetchall()) == rows["zmq"]
    db.close()


def _whole_milliseconds(prepared, extra_settlement_after: int):
    """``prepared`` with every tick, quote, depth and funding time rounded up to whole milliseconds
    (Binance's resolution; up, so no trade changes bar) and one more funding settlement, at the
    ``extra_settlement_after``-th trade of the paper window, so a short session sees one."""
    import dataclasses

    def ceil_ms(frame):
        if frame is None:
            return None
        index = pd.DatetimeIndex(-(-frame.index.asi8 // 1_000_000) * 1_000_000, tz="UTC", name="ts")
        return frame.set_axis(index)

    market = prepared.market
    instruments = {s: dataclasses.replace(d, trades=ceil_ms(d.trades), quotes=ceil_ms(d.quotes), depth=ceil_ms(d.depth))
                   for s, d in market.instruments.items()}
    traded = prepared.scenario.data.symbol
    trades = instruments[traded].trades
    at = trades.index[trades.index > prepared.split.test_start][extra_settlement_after]
    funding = {s: ceil_ms(f) for s, f in market.funding.items()}
    funding[traded] = pd.concat([funding[traded], pd.DataFrame({"rate": [0.00037]}, index=[at])]).sort_index()
    return dataclasses.replace(prepared, market=dataclasses.replace(market, instruments=instruments, funding=funding))


def test_binance_feed_gives_the_replay_signals_and_restarts_from_its_journal(small, tmp_path):
    """A local server speaking Binance's combined-stream protocol sends the replay's events as real
    USD-M futures messages → `--feed binance` gives the replay session's signals and fills, journals
    every event, and a restart with the same state folder rebuilds the session from the journal."""
    from lbml.live.binance import BinanceFeedConfig
    from lbml.live.node import paper_custom_inputs, paper_symbols
    from lbml.live.session import PaperOptions, run_paper
    from lbml.research.training import scenario_pipeline
    from lbml.workflows.prepare import prepare
    from tests.binance_support import BinanceStreamServer, futures_messages

    scenario, registry, model = small
    bars = 30
    prepared = _whole_milliseconds(prepare(scenario, registry), extra_settlement_after=300)
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    symbols = paper_symbols(scenario, prepared.market, pipeline)
    events = list(replay_events(prepared.market, symbols, prepared.split.test_start, **paper_custom_inputs(pipeline)))
    end = prepared.market[scenario.data.symbol].bars.index[prepared.split.test_start < prepared.market[
        scenario.data.symbol].bars.index][bars - 1].value
    n_window = sum(e.ts <= end for e in events)
    messages = futures_messages(events[: n_window + 5])  # the session stops at the first event after the window
    # Bad messages the feed guard quarantines: malformed, a price 1000x off, a time a year ahead.
    middle = len(messages) // 2
    stream, data = next(m for m in reversed(messages[:middle]) if m[0] == "bnbusdt@trade")
    year_ms = 365 * 24 * 3_600_000
    messages[middle:middle] = [
        '{"stream":"bnbusdt@trade","data":{"e":"trade","p":"oops"}}',
        json.dumps({"stream": stream, "data": data | {"p": repr(float(data["p"]) * 1000)}}),
        json.dumps({"stream": stream, "data": data | {"T": data["T"] + year_ms, "E": data["E"] + year_ms}}),
    ]
    streams = {"btcusdt@trade", "btcusdt@bookTicker", "bnbusdt@trade", "bnbusdt@bookTicker",
               "bnbusdt@depth5@500ms", "bnbusdt@markPrice@1s"}
    futures = BinanceFeedConfig(market="usdt_futures")

    def run(name, options, server):
        with server:
            summary = run_paper(scenario, registry, tmp_path / name, options, model_dir=model, prepared=prepared)
        assert server.error is None, server.error
        return summary

    server = BinanceStreamServer(messages, streams)
    options = PaperOptions(feed="binance", bars=bars, console=False, duration_s=120,
                           binance=dataclasses.replace(futures, url=server.url))
    live = run("binance", options, server)
    assert set(server.subscribed) == streams
    replay = run_paper(scenario, registry, tmp_path / "replay", PaperOptions(speed=1e9, bars=bars, console=False),
                       model_dir=model, prepared=prepared)
    assert live["feed_finished"] and live["items"] == replay["items"] == n_window + 2 * bars
    assert live["quarantined"] == {"malformed": 1, "price_jump": 1, "ts_gap": 1}
    rows = {}
    for name in ("binance", "replay"):
        db = sqlite3.connect(tmp_path / name / "state.sqlite")
        rows[name] = (db.execute("SELECT seq, ts, probability FROM signals").fetchall(),
                      db.execute("SELECT ts, side, quantity, price FROM fills").fetchall())
        db.close()
    assert len(rows["binance"][0]) == bars and rows["binance"] == rows["replay"]
    db = sqlite3.connect(tmp_path / "binance" / "state.sqlite")
    journal = [MarketEvent(*row) for row in db.execute("SELECT kind, symbol, ts, a, b, c, d FROM journal ORDER BY pos")]
    db.close()
    assert journal == events[:n_window]  # every event journaled, as sent, in order (funding included)
    assert {e.kind for e in journal} == {TRADE, QUOTE, DEPTH, FUNDING}

    # Restart: the journal rebuilds (and verifies) the session; the live stream only shows the
    # window is over.
    server = BinanceStreamServer(futures_messages(events[n_window: n_window + 5]), streams)
    again = run("binance", dataclasses.replace(options, binance=dataclasses.replace(futures, url=server.url)), server)
    assert again["recovery_complete"] and again["resumed_from"] == again["items"] == live["items"]
    db = sqlite3.connect(tmp_path / "binance" / "state.sqlite")
    assert (db.execute("SELECT seq, ts, probability FROM signals").fetchall(),
            db.execute("SELECT ts, side, quantity, price FROM fills").fetchall()) == rows["binance"]
    db.close()


def test_a_silent_feed_is_reported_as_stalled(small, tmp_path):
    """A zmq feed with no publisher: the status (and status.json) reports the stall."""
    import json

    from lbml.live.session import PaperOptions, run_paper

    scenario, registry, model = small
    state = tmp_path / "silent"
    run_paper(scenario, registry, state, PaperOptions(
        feed="zmq", endpoint=f"tcp://127.0.0.1:{_free_port()}", console=False, duration_s=5, stall_after_s=0.5),
        model_dir=model)
    # The final status.json is written at stop; the stall flag was raised by the periodic check.
    status = json.loads((state / "status.json").read_text())
    assert status["feed_stalled"] and status["items"] == 0


def test_a_binance_session_whose_server_is_unreachable_stops_with_one_line(small, tmp_path):
    from lbml.errors import DataError
    from lbml.live.binance import BinanceFeedConfig
    from lbml.live.session import PaperOptions, run_paper

    scenario, registry, model = small
    port = _free_port()  # nothing listens there
    options = PaperOptions(feed="binance", console=False, duration_s=60,
                           binance=BinanceFeedConfig(market="usdt_futures", url=f"ws://127.0.0.1:{port}"))
    with pytest.raises(DataError, match=f"the feed failed after item 0 .*: --feed binance: cannot connect to "
                                        f"ws://127.0.0.1:{port}") as failed:
        run_paper(scenario, registry, tmp_path / "state", options, model_dir=model)
    assert len(str(failed.value).splitlines()) == 1


def test_binance_spot_cannot_feed_a_funding_pipeline_and_nothing_is_written(tmp_path, capsys):
    from lbml.cli import main

    state = tmp_path / "state"
    code = main(["paper", "scenarios/default.toml", "--feed", "binance", "--binance-market", "spot",
                 "--state", str(state), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("lbml: error: --binance-market spot: the scenario's features use funding")
    assert len(err.splitlines()) == 1 and not state.exists()
