"""The feed guard: no live feed message reaches the node unless it is a plausible market event.

Every live source (``ZmqSource``, ``BinanceSource``) hands each raw message to one ``FeedGuard``:

1. **On the wire, before parsing**: at most ``max_message_bytes`` bytes and JSON nested at most
   ``max_nesting`` deep (counted on the bytes, outside strings), so a huge or deeply nested message
   never reaches the JSON parser.
2. **The decoded event** (the source's parser; a message it cannot read is ``malformed``):
   - finite, positive prices and sizes (trade price and size, quote prices and sizes, no crossed
     quote), sizes and prices within nautilus' limits, finite non-negative depth, finite funding
     rates within ``± max_abs_funding_rate``;
   - times: positive, not later than the wall clock plus ``max_ahead_of_clock_s``, not earlier
     than the wall clock minus ``max_behind_clock_s`` (off by default: a ZeroMQ feed may replay
     history), and never going back: an event up to ``max_late_ms`` before the last accepted one is
     stamped at that event's time (streams pushed independently arrive slightly out of order),
     an earlier one is quarantined (bars already closed cannot take it);
   - jumps: a time more than ``max_gap_s`` after the last accepted event, or a price (trade, or
     either side of a quote) more than ``max_jump`` away from the symbol's last good price (in log
     terms, so ×(1 + max_jump) and ÷(1 + max_jump) are the same distance), is a *suspect*.

Suspects are quarantined, but a genuine move that persists is accepted: when ``confirm_after``
consecutive suspects agree with each other (each within ``max_jump`` of the previous suspect's
price, or within ``max_gap_s`` after the previous suspect's time), the last of them is accepted and
becomes the new reference. The first ``confirm_after - 1`` prints of a genuine jump are lost; a lone
bad print (a fat finger, a unit error, a stamp a year ahead) is followed by a normal print, which
ends the run, so it never moves the reference. With the default band a single message can move a
price by at most 10 %: no message moves equity by more than the market could. The references start
at the session's last known event (the history before the paper window, or the journal of a
restarted session): a feed that starts far from it loses its first ``confirm_after - 1`` prints.

Each quarantined message is counted by reason (``status.feed_quarantine``) and appended to the
state folder's ``quarantine.jsonl`` (``lbml.live.quarantine``). The session stops, with a one-line
``DataError``, when more than ``max_bad_share`` of the last ``rate_window`` messages were
quarantined.
"""

import math
import time
from collections import Counter, deque
from collections.abc import Callable

from lbml.errors import DataError
from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE, MarketEvent
from lbml.live.quarantine import QuarantineJournal
from lbml.nautilus.model import PRICE_MAX, QUANTITY_MAX
from lbml.scenario import FeedGuardConfig

OVERSIZED = "oversized"
TOO_DEEP = "too_deep"
MALFORMED = "malformed"
NOT_FINITE = "not_finite"
NOT_POSITIVE = "not_positive"
OUT_OF_RANGE = "out_of_range"
CROSSED_QUOTE = "crossed_quote"
TS_INVALID = "ts_invalid"
TS_AHEAD_OF_CLOCK = "ts_ahead_of_clock"
TS_BEHIND_CLOCK = "ts_behind_clock"
TS_BACKWARDS = "ts_backwards"
TS_GAP = "ts_gap"
PRICE_JUMP = "price_jump"
REASONS = (OVERSIZED, TOO_DEEP, MALFORMED, NOT_FINITE, NOT_POSITIVE, OUT_OF_RANGE, CROSSED_QUOTE, TS_INVALID,
           TS_AHEAD_OF_CLOCK, TS_BEHIND_CLOCK, TS_BACKWARDS, TS_GAP, PRICE_JUMP)

_OPEN, _CLOSE, _QUOTE, _ESCAPE = frozenset(b"[{"), frozenset(b"]}"), ord('"'), ord("\\")


class Quarantine(Exception):
    """A message that must not reach the node: ``reason`` (one of ``REASONS``) and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def nesting_depth(raw: bytes, limit: int) -> int:
    """Return how deep ``raw``'s JSON arrays and objects nest (outside strings), stopping past ``limit``."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # cannot be deeper than the number of openers
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _ESCAPE:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif byte in _CLOSE:
            depth -= 1
    return deepest


class _Run:
    """Consecutive suspects that agree with each other (a candidate new level)."""

    __slots__ = ("level", "count")

    def __init__(self) -> None:
        self.level: float | None = None
        self.count = 0

    def add(self, level: float, agrees: Callable[[float, float], bool]) -> int:
        if self.level is not None and agrees(self.level, level):
            self.count += 1
        else:
            self.count = 1
        self.level = level
        return self.count

    def reset(self) -> None:
        self.level, self.count = None, 0


class FeedGuard:
    """Checks, quarantines and counts a live feed's messages (see the module docstring).

    Parameters
    ----------
    config
        The scenario's ``[paper.feed_guard]`` settings.
    journal
        Where quarantined messages are appended (and counted from, on a restart).
    status
        The session's ``PaperStatus``: ``feed_quarantine`` (counts by reason), ``bad_messages``
        (their total) and ``feed_restamped`` are kept current.
    clock
        Wall-clock time in nanoseconds since the epoch.
    """

    def __init__(
        self, config: FeedGuardConfig, journal: QuarantineJournal, status, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.config = config
        self.journal = journal
        self.status = status
        self.clock = clock
        self.counts: Counter[str] = Counter(journal.counts())
        self.restamped = 0
        self.last_ts = 0
        self.last_price: dict[str, float] = {}
        self._band = math.log1p(config.max_jump)
        self._gap_ns = int(config.max_gap_s * 1e9)
        self._late_ns = int(config.max_late_ms * 1e6)
        self._ahead_ns = int(config.max_ahead_of_clock_s * 1e9)
        self._behind_ns = None if config.max_behind_clock_s is None else int(config.max_behind_clock_s * 1e9)
        self._time_run = _Run()
        self._price_runs: dict[str, _Run] = {}
        self._window: deque[bool] = deque()
        self._bad_in_window = 0
        self._publish()

    # -- references ------------------------------------------------------------------------------
    def observe(self, event: MarketEvent) -> MarketEvent:
        """Take an already accepted event (history, journal) as the reference; return it unchanged."""
        self.last_ts = max(self.last_ts, event.ts)
        level = _level(event)
        if level is not None:
            self.last_price[event.symbol] = level
        return event

    # -- the checks ------------------------------------------------------------------------------
    def wire(self, raw: bytes) -> bool:
        """Count one message; return False (quarantined) if it is too big or too deep to parse."""
        self._count_message()
        limit = self.config.max_message_bytes
        if len(raw) > limit:
            self.reject(raw, Quarantine(OVERSIZED, f"{len(raw)} bytes > {limit}"))
            return False
        depth = nesting_depth(raw, self.config.max_nesting)
        if depth > self.config.max_nesting:
            self.reject(raw, Quarantine(TOO_DEEP, f"JSON nested deeper than {self.config.max_nesting}"))
            return False
        return True

    def check(self, event: MarketEvent, raw: bytes) -> MarketEvent | None:
        """Return the event to deliver (possibly restamped later), or None (quarantined)."""
        try:
            self._values(event)
            ts = self._clock_checks(event.ts)
            return self._accept_or_suspect(event, ts)
        except Quarantine as why:
            self.reject(raw, why)
            return None

    def reject_malformed(self, raw: bytes, detail: str) -> None:
        """Quarantine ``raw`` as malformed (it did not decode to an event)."""
        self.reject(raw, Quarantine(MALFORMED, detail))

    def reject(self, raw: bytes, why: Quarantine) -> None:
        """Quarantine ``raw`` for ``why``: count it, journal it, stop the session past the rate limit."""
        self.counts[why.reason] += 1
        if self._window and not self._window[-1]:
            self._window[-1] = True
            self._bad_in_window += 1
        self.journal.append(why.reason, why.detail, raw[: self.config.journal_raw_bytes], self.clock())
        self._publish()
        cfg = self.config
        if self._bad_in_window > cfg.max_bad_share * cfg.rate_window:
            reasons = ", ".join(f"{r} {n}" for r, n in self.counts.most_common())
            raise DataError(f"feed guard: {self._bad_in_window} of the last {len(self._window)} messages were "
                            f"quarantined (limit {cfg.max_bad_share:.0%} of {cfg.rate_window}); reasons: {reasons}; "
                            f"see {self.journal.path}")

    # -- internals -------------------------------------------------------------------------------
    def _count_message(self) -> None:
        self._window.append(False)
        if len(self._window) > self.config.rate_window and self._window.popleft():
            self._bad_in_window -= 1

    def _values(self, event: MarketEvent) -> None:
        kind = event.kind
        if kind == TRADE:
            _price(event.a, "price")
            _size(event.b, "size", positive=True)
        elif kind == QUOTE:
            _price(event.a, "bid")
            _price(event.b, "ask")
            _size(event.c, "bid_size", positive=True)
            _size(event.d, "ask_size", positive=True)
            if event.a > event.b:
                raise Quarantine(CROSSED_QUOTE, f"bid {event.a!r} > ask {event.b!r}")
        elif kind == DEPTH:
            _size(event.a, "bid_depth", positive=False)
            _size(event.b, "ask_depth", positive=False)
        elif kind == FUNDING:
            if not math.isfinite(event.a):
                raise Quarantine(NOT_FINITE, f"funding rate {event.a!r}")
            if abs(event.a) > self.config.max_abs_funding_rate:
                raise Quarantine(OUT_OF_RANGE, f"funding rate {event.a!r} beyond ±{self.config.max_abs_funding_rate}")

    def _clock_checks(self, ts: int) -> int:
        if ts <= 0:
            raise Quarantine(TS_INVALID, f"ts {ts}")
        now = self.clock()
        if ts > now + self._ahead_ns:
            raise Quarantine(TS_AHEAD_OF_CLOCK, f"ts {ts} is {(ts - now) / 1e9:.0f} s ahead of the clock")
        if self._behind_ns is not None and ts < now - self._behind_ns:
            raise Quarantine(TS_BEHIND_CLOCK, f"ts {ts} is {(now - ts) / 1e9:.0f} s behind the clock")
        if ts < self.last_ts:
            if self.last_ts - ts > self._late_ns:
                raise Quarantine(TS_BACKWARDS, f"ts {ts} is {(self.last_ts - ts) / 1e9:.3f} s before the last event")
            self.restamped += 1
            return self.last_ts
        return ts

    def _accept_or_suspect(self, event: MarketEvent, ts: int) -> MarketEvent:
        time_ok = self.last_ts == 0 or ts - self.last_ts <= self._gap_ns
        if time_ok:
            self._time_run.reset()
        elif self._time_run.add(ts, self._same_time_level) < self.config.confirm_after:
            self._suspect_price(event)  # a price run continues through a time suspect
            raise Quarantine(TS_GAP, f"ts {ts} is {(ts - self.last_ts) / 1e9:.0f} s after the last event "
                                     f"(max_gap_s {self.config.max_gap_s:g})")
        if self._suspect_price(event):
            raise Quarantine(PRICE_JUMP, f"{event.symbol} price {_level(event)!r} vs last good "
                                         f"{self.last_price[event.symbol]!r} (max_jump {self.config.max_jump:g})")
        self._time_run.reset()
        accepted = event if ts == event.ts else event._replace(ts=ts)
        self.observe(accepted)
        self._publish()
        return accepted

    def _suspect_price(self, event: MarketEvent) -> bool:
        """Whether the event's price is a jump not (yet) confirmed; advances the symbol's run."""
        level = _level(event)
        ref = self.last_price.get(event.symbol)
        if level is None or ref is None:
            return False
        prices = (event.a, event.b) if event.kind == QUOTE else (event.a,)
        run = self._price_runs.setdefault(event.symbol, _Run())
        if all(abs(math.log(p / ref)) <= self._band for p in prices):
            run.reset()
            return False
        if run.add(level, self._same_price_level) < self.config.confirm_after:
            return True
        run.reset()  # confirmed: the new level becomes the reference if the event is accepted
        return False

    def _same_price_level(self, previous: float, level: float) -> bool:
        return abs(math.log(level / previous)) <= self._band

    def _same_time_level(self, previous: float, ts: float) -> bool:
        return previous <= ts <= previous + self._gap_ns

    def _publish(self) -> None:
        # New objects, never mutated: the status is read from a timer thread.
        self.status.feed_quarantine = dict(self.counts)
        self.status.bad_messages = sum(self.counts.values())
        self.status.feed_restamped = self.restamped


def _level(event: MarketEvent) -> float | None:
    if event.kind == TRADE:
        return event.a
    if event.kind == QUOTE:
        return (event.a + event.b) / 2
    return None


def _price(value: float, name: str) -> None:
    if not math.isfinite(value):
        raise Quarantine(NOT_FINITE, f"{name} {value!r}")
    if value <= 0:
        raise Quarantine(NOT_POSITIVE, f"{name} {value!r}")
    if value > PRICE_MAX:
        raise Quarantine(OUT_OF_RANGE, f"{name} {value!r} above {PRICE_MAX:g}")


def _size(value: float, name: str, positive: bool) -> None:
    if not math.isfinite(value):
        raise Quarantine(NOT_FINITE, f"{name} {value!r}")
    if value < 0 or (positive and value == 0):
        raise Quarantine(NOT_POSITIVE, f"{name} {value!r}")
    if value > QUANTITY_MAX:
        raise Quarantine(OUT_OF_RANGE, f"{name} {value!r} above {QUANTITY_MAX:g}")
