"""The feed guard's rules, message by message (the paper sessions fed through it are in
test_feed_guard_session.py)."""

import json

import pytest

from lbml.errors import ConfigError, DataError
from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE, MarketEvent
from lbml.live.feed_guard import FeedGuard, nesting_depth
from lbml.live.quarantine import FILE_NAME, QuarantineJournal, quarantine_counts
from lbml.live.status import PaperStatus
from lbml.scenario import FeedGuardConfig, parse_scenario

S = 10**9
NOW = 1_800_000_000 * S  # the wall clock of these tests
DATA = {"source": "synthetic"}
T0 = NOW - 2 * 365 * 86_400 * S  # the last known event: a replay of two years ago


def make_guard(tmp_path, **config) -> FeedGuard:
    guard = FeedGuard(FeedGuardConfig(**config), QuarantineJournal(tmp_path), PaperStatus(), clock=lambda: NOW)
    guard.observe(MarketEvent(TRADE, "X", T0, 100.0, 1.0, 1.0))
    return guard


def trade(ts: int, price: float = 100.0, size: float = 1.0) -> MarketEvent:
    return MarketEvent(TRADE, "X", ts, price, size, 1.0)


def quote(ts: int, bid: float = 99.9, ask: float = 100.1, bid_size: float = 1.0, ask_size: float = 1.0) -> MarketEvent:
    return MarketEvent(QUOTE, "X", ts, bid, ask, bid_size, ask_size)


def admit(guard: FeedGuard, event: MarketEvent) -> MarketEvent | None:
    raw = json.dumps(event._asdict()).encode()
    assert guard.wire(raw)
    return guard.check(event, raw)


def test_good_events_pass_unchanged_and_count_nothing(tmp_path):
    guard = make_guard(tmp_path)
    events = [trade(T0 + S), quote(T0 + S), MarketEvent(DEPTH, "X", T0 + 2 * S, 10.0, 0.0, 0.0),
              MarketEvent(FUNDING, "X", T0 + 3 * S, -0.0003, 0.0, 0.0), trade(T0 + 4 * S, 109.9)]
    assert [admit(guard, e) for e in events] == events
    assert guard.counts == {} and guard.status.bad_messages == 0 and not (tmp_path / FILE_NAME).exists()


@pytest.mark.parametrize(("event", "reason"), [
    (trade(T0 + S, float("nan")), "not_finite"),
    (trade(T0 + S, float("inf")), "not_finite"),
    (trade(T0 + S, -100.0), "not_positive"),
    (trade(T0 + S, 0.0), "not_positive"),
    (trade(T0 + S, size=0.0), "not_positive"),
    (trade(T0 + S, size=float("nan")), "not_finite"),
    (trade(T0 + S, size=1e30), "out_of_range"),
    (trade(T0 + S, 1e30), "out_of_range"),
    (quote(T0 + S, bid=float("nan")), "not_finite"),
    (quote(T0 + S, ask_size=-1.0), "not_positive"),
    (quote(T0 + S, bid=100.2, ask=100.1), "crossed_quote"),
    (MarketEvent(DEPTH, "X", T0 + S, float("nan"), 1.0, 0.0), "not_finite"),
    (MarketEvent(DEPTH, "X", T0 + S, -1.0, 1.0, 0.0), "not_positive"),
    (MarketEvent(FUNDING, "X", T0 + S, 0.5, 0.0, 0.0), "out_of_range"),
    (MarketEvent(FUNDING, "X", T0 + S, float("nan"), 0.0, 0.0), "not_finite"),
    (trade(-1), "ts_invalid"),
    (trade(0), "ts_invalid"),
    (trade(NOW + 61 * S), "ts_ahead_of_clock"),
    (trade(T0 - 3_600 * S), "ts_backwards"),
    (trade(T0 - 6 * S), "ts_backwards"),
    (trade(T0 + 365 * 86_400 * S), "ts_gap"),
    (trade(T0 + S, 100_000.0), "price_jump"),
    (trade(T0 + S, 100.0 / 1.2), "price_jump"),
    (quote(T0 + S, bid=0.01), "price_jump"),
])
def test_each_bad_event_is_quarantined_with_its_reason_and_journaled(tmp_path, event, reason):
    guard = make_guard(tmp_path)
    assert admit(guard, event) is None
    assert guard.counts == {reason: 1} and guard.status.feed_quarantine == {reason: 1}
    assert guard.status.bad_messages == 1
    [line] = (tmp_path / FILE_NAME).read_text().splitlines()
    assert json.loads(line)["reason"] == reason
    assert admit(guard, trade(T0 + 2 * S)) == trade(T0 + 2 * S)  # the feed goes on


def test_a_slightly_late_event_is_stamped_at_the_last_time_never_earlier(tmp_path):
    guard = make_guard(tmp_path, max_late_ms=5000)
    assert admit(guard, trade(T0 - 4 * S, 100.5)) == trade(T0, 100.5)
    assert guard.restamped == 1 and guard.status.feed_restamped == 1 and guard.counts == {}


def test_clock_limits_are_configurable(tmp_path):
    guard = make_guard(tmp_path, max_behind_clock_s=600)
    assert admit(guard, trade(T0 + S)) is None and guard.counts == {"ts_behind_clock": 1}
    (tmp_path / "b").mkdir()
    guard = make_guard(tmp_path / "b", max_ahead_of_clock_s=7200, max_gap_s=3 * 365 * 86_400)
    assert admit(guard, trade(NOW + 3_600 * S)) is not None


def test_a_lone_jump_never_moves_the_reference(tmp_path):
    """A fat finger between good prints: quarantined, and the next good print ends the run."""
    guard = make_guard(tmp_path, confirm_after=3)
    for i in range(1, 20, 2):
        assert admit(guard, trade(T0 + i * S, 100_000.0)) is None
        assert admit(guard, trade(T0 + (i + 1) * S, 100.0)) is not None
    assert guard.counts == {"price_jump": 10} and guard.last_price["X"] == 100.0


def test_a_jump_that_persists_is_accepted_at_the_confirm_after_th_consistent_print(tmp_path):
    guard = make_guard(tmp_path, confirm_after=3, max_jump=0.1)
    assert admit(guard, trade(T0 + 1 * S, 130.0)) is None
    assert admit(guard, quote(T0 + 2 * S, 129.9, 130.1)) is None  # trades and quotes make one run
    assert admit(guard, MarketEvent(DEPTH, "X", T0 + 3 * S, 1.0, 1.0, 0.0)) is not None  # no price: no effect
    assert admit(guard, trade(T0 + 4 * S, 131.0)) == trade(T0 + 4 * S, 131.0)
    assert guard.last_price["X"] == 131.0 and guard.counts == {"price_jump": 2}
    assert admit(guard, trade(T0 + 5 * S, 130.5)) is not None  # the new level is the reference
    # Suspects that disagree with each other start a new run each time: never accepted.
    for i, price in enumerate([200.0, 300.0, 200.0, 300.0]):
        assert admit(guard, trade(T0 + (6 + i) * S, price)) is None


def test_a_time_gap_that_persists_is_accepted(tmp_path):
    """A feed back after an outage: its first confirm_after - 1 events are quarantined."""
    guard = make_guard(tmp_path, confirm_after=3, max_gap_s=300)
    later = T0 + 1_800 * S
    assert admit(guard, trade(later)) is None
    assert admit(guard, trade(later + S)) is None
    assert admit(guard, trade(later + 2 * S)) == trade(later + 2 * S)
    assert guard.counts == {"ts_gap": 2} and guard.last_ts == later + 2 * S


def test_a_year_ahead_stamp_does_not_end_the_feed(tmp_path):
    guard = make_guard(tmp_path)
    assert admit(guard, trade(T0 + 365 * 86_400 * S)) is None
    assert guard.counts == {"ts_gap": 1}
    assert admit(guard, trade(T0 + S)) == trade(T0 + S)
    assert guard.last_ts == T0 + S


def test_nesting_is_counted_outside_strings_before_parsing():
    assert nesting_depth(b'{"a": [[1]]}', 2) == 3
    assert nesting_depth(b'{"a": "[[[[[[[[[["}', 2) == 1  # brackets inside a string do not nest
    assert nesting_depth(b'{"a": "\\"[[[[[["}', 2) == 1  # nor after an escaped quote
    assert nesting_depth(b"[" * 100_000, 8) == 9  # stops past the limit
    assert nesting_depth(b'{"type": "trade"}', 8) == 0  # few openers: no scan needed


def test_wire_limits(tmp_path):
    guard = make_guard(tmp_path, max_message_bytes=1024, max_nesting=4)
    assert not guard.wire(b"x" * 1025)
    assert not guard.wire(b'{"a": [[[[1]]]]}')
    assert guard.wire(b'{"a": [[[1]]]}')
    assert guard.counts == {"oversized": 1, "too_deep": 1}
    [first, _] = [json.loads(line) for line in (tmp_path / FILE_NAME).read_text().splitlines()]
    assert first["raw"] == "x" * 512  # journal_raw_bytes


def test_the_session_stops_only_past_the_bad_message_rate(tmp_path):
    guard = make_guard(tmp_path, rate_window=100, max_bad_share=0.1)
    ts = T0
    for round_ in range(5):  # 10 bad in every 100 messages: at the limit, never past it
        for i in range(100):
            ts += S
            event = trade(ts, float("nan")) if i % 10 == 0 else trade(ts)
            admit(guard, event)
    assert guard.counts == {"not_finite": 50}
    admit(guard, trade(ts + S, float("nan")))  # replaces a bad one leaving the window: still 10
    with pytest.raises(DataError) as stopped:
        admit(guard, trade(ts + 2 * S, float("nan")))
    message = str(stopped.value)
    assert message == (f"feed guard: 11 of the last 100 messages were quarantined (limit 10% of 100); reasons: "
                       f"not_finite 52; see {tmp_path / FILE_NAME}")


def test_a_restarted_guard_counts_the_journal_and_ignores_a_cut_line(tmp_path):
    guard = make_guard(tmp_path)
    admit(guard, trade(T0 + S, float("nan")))
    admit(guard, trade(T0 + S, -1.0))
    with (tmp_path / FILE_NAME).open("a") as f:
        f.write('{"wall_ns": 1, "reason": "not_fin')  # a crash in the middle of a line
    assert quarantine_counts(tmp_path) == {"not_finite": 1, "not_positive": 1}
    again = FeedGuard(FeedGuardConfig(), QuarantineJournal(tmp_path), PaperStatus(), clock=lambda: NOW)
    assert again.status.bad_messages == 2


def test_the_scenario_section_is_typed_and_strict():
    scenario = parse_scenario({"name": "x", "data": DATA, "paper": {"feed_guard": {"max_jump": 0.2, "confirm_after": 5}}})
    assert scenario.paper.feed_guard.max_jump == 0.2 and scenario.paper.feed_guard.confirm_after == 5
    assert parse_scenario({"name": "x", "data": DATA}).paper.feed_guard == FeedGuardConfig()
    for bad, match in (({"max_jmp": 0.2}, "paper.feed_guard.max_jmp: unknown key"),
                       ({"max_jump": -1}, "paper.feed_guard.max_jump: Input should be greater than 0"),
                       ({"confirm_after": "3"}, "paper.feed_guard.confirm_after"),
                       ({"max_jump": float("nan")}, "paper.feed_guard.max_jump"),
                       ({"max_bad_share": 2}, "paper.feed_guard.max_bad_share")):
        with pytest.raises(ConfigError, match=match):
            parse_scenario({"name": "x", "data": DATA, "paper": {"feed_guard": bad}})
