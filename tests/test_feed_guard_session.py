"""Issue #19 item 1: bad live feed messages against a real paper session fed through ``--feed zmq``.

A publisher replays the scenario's paper window on a loopback socket and injects one bad message
right after the session's first fill (a position is open). The session must finish the stream,
quarantine that message (counted by reason in status.json, journaled in quarantine.jsonl, in the
report's metrics) and end with exactly the signals, fills and equity of a session that never saw it.
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbml.live.events import QUOTE, TRADE, encode_event, replay_events
from lbml.live.quarantine import FILE_NAME

from .conftest import without_calibration, without_edge_gate
from .paper_support import state_rows
from .zmq_feed_support import Publisher, free_endpoint

pytestmark = pytest.mark.timeout(600)

BARS = 40
HOUR_NS = 3_600 * 10**9


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 3-day scenario, its model, the paper window's first 40 bars of events and a clean session."""
    from lbml.live.node import paper_custom_inputs, paper_symbols
    from lbml.live.session import PaperOptions, run_paper
    from lbml.research.training import scenario_pipeline
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario
    from lbml.workflows.prepare import prepare, train_model

    registry = load_registry()
    scenario = without_edge_gate(without_calibration(load_scenario("scenarios/default.toml").with_data(days=3)))
    root = tmp_path_factory.mktemp("feedguard")
    prepared = prepare(scenario, registry)
    train_model(prepared, registry, root / "model")
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    symbols = paper_symbols(scenario, prepared.market, pipeline)
    index = prepared.market[scenario.data.symbol].bars.index
    end = index[index > prepared.split.test_start][BARS - 1]
    events = list(replay_events(prepared.market, symbols, prepared.split.test_start, end,
                                **paper_custom_inputs(pipeline)))
    clean = run_paper(scenario, registry, root / "clean", PaperOptions(speed=1e9, bars=BARS, console=False),
                      model_dir=root / "model", prepared=prepared)
    return {"scenario": scenario, "registry": registry, "prepared": prepared, "model": root / "model",
            "events": events, "clean": clean, "clean_state": root / "clean", "traded": scenario.data.symbol}


def outcome(state) -> dict:
    return {
        "signals": state_rows(state, "SELECT seq, ts, probability FROM signals ORDER BY seq"),
        "fills": state_rows(state, "SELECT ts, side, quantity, price FROM fills ORDER BY rowid"),
        "equity": state_rows(state, "SELECT ts, equity, balance FROM equity ORDER BY ts"),
        "costs": state_rows(state, "SELECT ts, kind, amount FROM costs ORDER BY rowid"),
    }


def zmq_session(setup, state, messages: list[bytes], scenario=None) -> dict:
    from lbml.live.session import PaperOptions, run_paper

    endpoint = free_endpoint()
    with Publisher(endpoint, messages) as publisher:
        summary = run_paper(scenario or setup["scenario"], setup["registry"], state,
                            PaperOptions(feed="zmq", endpoint=endpoint, console=False, duration_s=300),
                            model_dir=setup["model"], prepared=setup["prepared"])
    assert publisher.error is None, publisher.error
    return summary


def after_first_fill(setup) -> int:
    """Index in the event list just after the clean session's first fill (a position is open)."""
    [(first_fill_ts,)] = state_rows(setup["clean_state"], "SELECT MIN(ts) FROM fills")
    assert first_fill_ts is not None, "the clean session must trade for these tests to mean anything"
    return next(i for i, e in enumerate(setup["events"]) if e.ts > first_fill_ts)


def last_trade(setup, before: int):
    return next(e for e in reversed(setup["events"][:before]) if e.kind == TRADE and e.symbol == setup["traded"])


def _msg(**fields) -> bytes:
    return json.dumps(fields).encode()


def bad_messages(setup, at: int) -> dict[str, tuple[bytes, str]]:
    """The issue's bad messages, made around event ``at``: name → (raw message, expected reason)."""
    t = last_trade(setup, at)._replace(ts=setup["events"][at - 1].ts)  # stamped as the event before it
    sym = t.symbol
    trade = {"type": "trade", "symbol": sym, "ts": t.ts, "price": t.a, "size": t.b, "side": int(t.c)}
    quote = next(e for e in reversed(setup["events"][:at]) if e.kind == QUOTE and e.symbol == sym)._replace(ts=t.ts)
    return {
        "price_x1000": (_msg(**trade | {"price": t.a * 1000}), "price_jump"),
        "nan_price": (json.dumps(trade | {"price": math.nan}).encode(), "not_finite"),
        "infinite_price": (json.dumps(trade | {"price": math.inf}).encode(), "not_finite"),
        "nan_quote": (json.dumps({"type": "quote", "symbol": sym, "ts": quote.ts, "bid": math.nan, "ask": quote.b,
                                  "bid_size": quote.c, "ask_size": quote.d}).encode(), "not_finite"),
        "negative_price": (_msg(**trade | {"price": -t.a}), "not_positive"),
        "hour_in_the_past": (_msg(**trade | {"ts": t.ts - HOUR_NS}), "ts_backwards"),
        "ts_minus_one": (_msg(**trade | {"ts": -1}), "ts_invalid"),
        "year_ahead": (_msg(**trade | {"ts": t.ts + 365 * 24 * HOUR_NS}), "ts_gap"),
        "deeply_nested": (b'{"type": "trade", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "too_deep"),
        "oversized": (_msg(**trade | {"pad": "x" * 200_000}), "oversized"),
    }


CASES = ("price_x1000", "nan_price", "infinite_price", "nan_quote", "negative_price", "hour_in_the_past",
         "ts_minus_one", "year_ahead", "deeply_nested", "oversized")


@pytest.mark.parametrize("case", CASES)
def test_one_bad_message_is_quarantined_and_changes_nothing(setup, tmp_path, case):
    at = after_first_fill(setup)
    raw, reason = bad_messages(setup, at)[case]
    messages = [encode_event(e) for e in setup["events"]]
    messages.insert(at, raw)
    state = tmp_path / "zmq"
    summary = zmq_session(setup, state, messages)

    assert summary["feed_finished"] and summary["bars"] == setup["clean"]["bars"]
    assert outcome(state) == outcome(setup["clean_state"])
    assert summary["equity"] == setup["clean"]["equity"] and summary["quarantined"] == {reason: 1}
    status = json.loads((state / "status.json").read_text())
    assert status["bad_messages"] == 1 and status["feed_quarantine"] == {reason: 1}
    [line] = (state / FILE_NAME).read_text().splitlines()
    journaled = json.loads(line)
    assert journaled["reason"] == reason and len(journaled["raw"]) <= 512
    assert raw.decode()[:512] == journaled["raw"]
    assert state_rows(state, "SELECT COUNT(*) FROM journal")[0][0] == len(setup["events"])  # the bad one is not


def test_the_report_counts_quarantined_messages(setup, tmp_path, capsys):
    from lbml.cli import main

    at = after_first_fill(setup)
    bad = bad_messages(setup, at)
    messages = [encode_event(e) for e in setup["events"]]
    for name in ("price_x1000", "nan_quote", "price_x1000"):
        messages.insert(at, bad[name][0])
    state = tmp_path / "zmq"
    zmq_session(setup, state, messages)
    assert main(["report", str(state)]) == 0
    out = capsys.readouterr().out
    assert "feed guard: 3 messages quarantined (price_jump 2, not_finite 1), see quarantine.jsonl" in out
    metrics = json.loads((state / "report" / "metrics.json").read_text())
    assert metrics["feed_quarantine"] == {"total": 3, "by_reason": {"price_jump": 2, "not_finite": 1},
                                          "journal": "quarantine.jsonl"}
    tearsheet = (state / "report" / "tearsheet.html").read_text()
    assert "<td>Live feed messages quarantined</td><td class='v' data-key='feed_quarantine.total'>3</td>" in tearsheet


def test_a_jump_that_persists_is_accepted_after_confirm_after_prints(setup, tmp_path):
    """A genuine move beyond the band: the first confirm_after - 1 prints are quarantined, then the
    new level is accepted and the session trades on it (its equity moves by the move, not more)."""
    at = after_first_fill(setup)
    traded = setup["traded"]
    # From event `at` on, the traded symbol's prices are 20% higher: beyond the 10% band.
    moved = [e._replace(a=e.a * 1.2, b=e.b * 1.2) if e.symbol == traded and e.kind in (TRADE, QUOTE) and i >= at
             else e for i, e in enumerate(setup["events"])]
    state = tmp_path / "zmq"
    summary = zmq_session(setup, state, [encode_event(e) for e in moved])
    assert summary["feed_finished"] and summary["quarantined"] == {"price_jump": 2}  # confirm_after = 3
    equity = [e for _, e, _ in outcome(state)["equity"]]
    start = setup["scenario"].venue.starting_balance
    assert all(abs(e / start - 1) < 0.5 for e in equity)  # a 20% move, at most 3x leverage


def test_the_session_stops_in_one_line_when_too_many_messages_are_bad(setup, tmp_path):
    from lbml.errors import DataError

    at = after_first_fill(setup)
    raw, _ = bad_messages(setup, at)["nan_price"]
    messages = [encode_event(e) for e in setup["events"]]
    for i in range(at, at + 400, 10):  # 40 bad messages among 400 around them
        messages.insert(i, raw)
    guard = setup["scenario"].paper.feed_guard.model_copy(update={"rate_window": 100, "max_bad_share": 0.05})
    scenario = setup["scenario"].model_copy(
        update={"paper": setup["scenario"].paper.model_copy(update={"feed_guard": guard})})
    state = tmp_path / "zmq"
    with pytest.raises(DataError, match=r"the feed failed after item \d+ \(the state keeps every item up to \d+\): feed guard: 6 of the "
                                        r"last 100 messages were quarantined \(limit 5% of 100\); reasons: not_finite 6"
                       ) as stopped:
        zmq_session(setup, state, messages, scenario=scenario)
    assert len(str(stopped.value).splitlines()) == 1
    status = json.loads((state / "status.json").read_text())
    assert status["state"] == "stopped" and status["bad_messages"] == 6
    assert len((state / FILE_NAME).read_text().splitlines()) == 6


# -- acceptance: a fuzzed stream --------------------------------------------------------------------
_YEAR_NS = 365 * 24 * HOUR_NS
# (message type, field, corruption of the field's valid value): each one makes the message bad.
CORRUPTIONS = [
    ("trade", "price", lambda v: math.nan), ("trade", "price", lambda v: math.inf),
    ("trade", "price", lambda v: -math.inf), ("trade", "price", lambda v: -v), ("trade", "price", lambda v: 0.0),
    ("trade", "price", lambda v: v * 1000), ("trade", "price", lambda v: v / 1000), ("trade", "price", lambda v: 1e300),
    ("trade", "price", lambda v: "abc"), ("trade", "price", lambda v: None), ("trade", "size", lambda v: math.nan),
    ("trade", "size", lambda v: -1.0), ("trade", "size", lambda v: 0.0), ("trade", "size", lambda v: 1e30),
    ("trade", "ts", lambda v: -1), ("trade", "ts", lambda v: 0), ("trade", "ts", lambda v: v - HOUR_NS),
    ("trade", "ts", lambda v: v + _YEAR_NS), ("trade", "ts", lambda v: 2**70), ("trade", "ts", lambda v: "soon"),
    ("trade", "side", lambda v: 0), ("trade", "side", lambda v: 2), ("quote", "bid", lambda v: math.nan),
    ("quote", "ask", lambda v: math.inf), ("quote", "bid", lambda v: v * 1.01),  # crossed
    ("quote", "ask_size", lambda v: -1.0), ("quote", "bid_size", lambda v: math.nan),
    ("quote", "ts", lambda v: v - HOUR_NS), ("depth", "bid_depth", lambda v: math.nan),
    ("depth", "ask_depth", lambda v: -5.0), ("trade", None, None),  # a field missing
]


def _json_values():
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                           max_size=4), max_leaves=12)


def _bad_messages():
    """Strategy: (type of the valid message it is made from, that message → a bad message)."""
    def corrupt(choice):
        kind, name, change = choice

        def make(base: dict) -> bytes:
            msg = dict(base)
            if name is None:
                msg.pop("price" if kind == "trade" else next(iter(set(msg) - {"type", "symbol", "ts"})))
            else:
                msg[name] = change(msg[name])
            return json.dumps(msg).encode()
        return kind, make

    garbage = st.binary(max_size=300).filter(lambda b: b"end" not in b).map(lambda b: ("any", lambda _: b))
    not_an_event = _json_values().filter(lambda v: not (isinstance(v, dict) and "type" in v)).map(
        lambda v: ("any", lambda _: json.dumps(v).encode()))
    deep = st.integers(9, 5000).map(
        lambda n: ("any", lambda _: b'{"type": "trade", "x": ' + b"[" * n + b"]" * n + b"}"))
    huge = st.integers(65_600, 300_000).map(
        lambda n: ("trade", lambda base: json.dumps(base | {"pad": "x" * n}).encode()))
    others = st.one_of(garbage, not_an_event, deep, huge)
    # Six draws in ten corrupt one field of a valid message (the adversarial cases), four are noise.
    return st.integers(0, 9).flatmap(lambda k: st.sampled_from(CORRUPTIONS).map(corrupt) if k < 6 else others)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_fuzzed_stream_moves_equity_only_on_valid_events(setup, tmp_path_factory, data):
    """Issue #19's acceptance test: random and adversarial messages among the valid ones. The
    session survives, every bad message is counted, and signals, fills, costs and equity are those
    of the session that saw only the valid events. (At most 12 bad messages, below confirm_after =
    16, so no run of agreeing suspects can be confirmed: every one of them is bad by construction.)"""
    events = setup["events"]
    scenario = setup["scenario"]
    guard = scenario.paper.feed_guard.model_copy(update={"confirm_after": 16})
    scenario = scenario.model_copy(update={"paper": scenario.paper.model_copy(update={"feed_guard": guard})})
    positions = data.draw(st.lists(st.integers(1, len(events) - 1), min_size=1, max_size=12, unique=True))
    bad = [data.draw(_bad_messages()) for _ in positions]
    valid = [json.loads(encode_event(e)) for e in events]
    messages: list[bytes] = []
    inserted = dict(zip(positions, bad))
    for i, event in enumerate(events):
        if i in inserted:
            kind, make = inserted[i]
            wanted = kind if kind != "any" else "trade"
            base = next((m for m in reversed(valid[:i]) if m["type"] == wanted), None)
            base = base if base is not None else next(m for m in valid if m["type"] == wanted)
            messages.append(make(base | {"ts": events[i - 1].ts}))
        messages.append(encode_event(event))
    state = tmp_path_factory.mktemp("fuzz") / "zmq"
    summary = zmq_session(setup, state, messages, scenario=scenario)
    assert summary["feed_finished"]
    assert sum(summary["quarantined"].values()) == len(bad)
    assert json.loads((state / "status.json").read_text())["bad_messages"] == len(bad)
    assert len((state / FILE_NAME).read_text().splitlines()) == len(bad)
    assert state_rows(state, "SELECT COUNT(*) FROM journal")[0][0] == len(events)
    assert outcome(state) == outcome(setup["clean_state"])
    assert summary["equity"] == setup["clean"]["equity"]



def test_a_cli_session_exports_the_counts_as_prometheus_metrics(setup, tmp_path):
    """`lbml paper --feed zmq --metrics-port P` in its own process: bad messages show up in the
    Prometheus endpoint (total and by reason) and status.json, and the session exits 0."""
    from prometheus_client.parser import text_string_to_metric_families

    from .watch_support import ControlledFeed, free_port, read_status, scrape, start_paper, wait_for

    scenario_file = tmp_path / "three_days.toml"
    scenario_file.write_text(setup["scenario"].to_toml())
    at = after_first_fill(setup)
    bad = bad_messages(setup, at)
    port = free_port()
    feed = ControlledFeed(f"tcp://127.0.0.1:{free_port()}")
    state = tmp_path / "state"
    proc = start_paper(scenario_file, setup["model"], state, feed.endpoint, tmp_path / "paper.log", "--metrics-port",
                       str(port))
    try:
        feed.wait_subscriber(120)
        feed.send(setup["events"][:at])
        feed.send_raw([bad[name][0] for name in ("price_x1000", "negative_price", "price_x1000")])
        url = f"http://127.0.0.1:{port}/metrics"

        def samples() -> dict:
            return {(x.name, x.labels.get("reason")): x.value
                    for family in text_string_to_metric_families(scrape(url)) for x in family.samples}

        wait_for(lambda: samples().get(("lbml_paper_bad_feed_messages_total", None)) == 3, 120, "3 bad messages")
        m = samples()
        assert m[("lbml_paper_bad_feed_messages_by_reason_total", "price_jump")] == 2
        assert m[("lbml_paper_bad_feed_messages_by_reason_total", "not_positive")] == 1
        wait_for(lambda: (read_status(state) or {}).get("bad_messages") == 3, 60, "status.json to show them")
        assert read_status(state)["feed_quarantine"] == {"price_jump": 2, "not_positive": 1}
        feed.send(setup["events"][at:])
        feed.end()
        assert proc.wait(timeout=180) == 0, (tmp_path / "paper.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        feed.close()
    assert outcome(state) == outcome(setup["clean_state"])
