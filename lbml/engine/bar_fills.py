"""Bar-mode fills at the next bar's open, not its close.

With EXTERNAL bars, an order decided on bar t's close reaches the venue after ``latency_ms``; the
next market event is bar t+1, which nautilus 1.221 processes as four trades (open, high, low, close)
and only then runs the venue, so the order would fill at bar t+1's *close*: a full bar late. The
first trade after the decision is bar t+1's open. ``NextOpenFillModule`` applies that open to the
matching engine's book as one trade (the bar's volume) before anything at or after bar t+1's start
can run the venue, so commands already due are executed at that open (a market order fills at it;
resting orders are matched against it exactly as the bar's own open step would). The bar's high,
low and close are then processed as usual, so the new position's stop-loss and take-profit are
already live for the rest of that bar.

What runs the venue first is not always the traded bar: a reference symbol's bar, or custom data
(kline taker-buy flow, funding, depth), stamped at the same instant or inside bar t+1, comes first
in the engine's stream (custom data precedes bars at equal times, so the signal actor has it when
the bar arrives). The module therefore opens the traded bar that contains that moment when it sees
such an event (``pre_process`` for bars; the message bus for custom data, which the data engine
publishes before the venue runs), once per bar, and shows that open first to the modules that
precede it on the venue (gap-through, borrow and lending settlements), as the traded bar itself would. Without it, an order reached the venue on the
custom event and filled at the book left by bar t's close, stamped with bar t+1's time: outside
bar t+1's range when the market moved between the two (issue #18).

The fill carries the time of the event that ran the venue (bar t+1's close for a bar or same-time
custom data), the only clock the engine has at that point.
"""

from array import array
from bisect import bisect_left

import numpy as np
import pandas as pd

from lbml.nautilus.backtest import SimulationModuleConfig, VenueModule
from lbml.nautilus.bus import subscribe_all_data
from lbml.nautilus.model import AggressorSide, Bar, InstrumentId, TradeId, TradeTick, make_price, make_qty


class NextOpenFillConfig(SimulationModuleConfig, frozen=True):
    instrument_id: str = ""
    bar_minutes: int = 1


class NextOpenFillModule(VenueModule):
    """Executes the commands due at a bar's open against that open (bar execution only).

    ``bars`` are the traded instrument's bars as the engine receives them (index: close time,
    columns ``open`` and ``volume``): the module looks up the open of the bar being processed when
    another event of the same moment runs the venue first.
    """

    def __init__(self, config: NextOpenFillConfig, bars: pd.DataFrame) -> None:
        super().__init__(config)
        self._instrument_id = InstrumentId.from_str(config.instrument_id)
        self._bar_ns = config.bar_minutes * 60_000_000_000
        # Typed arrays, 8 bytes a value (a Python list of floats holds ~32): a scalar lookup with
        # ``bisect`` in one costs a tenth of NumPy's ``searchsorted`` on one value, and runs only on
        # an event outside the bar opened last (below); the values are the same int64s and float64s.
        self._close_ns = array("q", np.ascontiguousarray(bars.index.asi8, dtype=np.int64).tobytes())
        self._open = array("d", np.ascontiguousarray(bars["open"], dtype=np.float64).tobytes())
        self._volume = array("d", np.ascontiguousarray(bars["volume"], dtype=np.float64).tobytes())
        self._opened = -1  # index of the last bar whose open was applied
        # (start, close] of that bar: events inside it (most of them: the traded bar itself, the
        # reference bar, the predictions) return before the lookup.
        self._opened_span = (0, -1)
        self._before: list = []  # modules that see a market event before this one
        self.n_bars = 0
        self.n_early = 0  # opens applied on another event than the traded bar itself

    def precede_with(self, modules: list) -> None:
        """The venue's modules ahead of this one: they pre-process an open applied early."""
        self._before = list(modules)

    def register_base(self, portfolio, msgbus, cache, clock) -> None:
        super().register_base(portfolio, msgbus, cache, clock)
        subscribe_all_data(msgbus, self._on_data)  # before any data is published (see the function)

    def pre_process(self, data) -> None:
        if isinstance(data, Bar):
            self._open_bar_at(data.ts_init, own=data.bar_type.instrument_id == self._instrument_id)

    def _on_data(self, data) -> None:
        if not isinstance(data, Bar):  # bars were opened in pre_process, before the venue saw them
            self._open_bar_at(data.ts_init, own=False)

    def _open_bar_at(self, ts: int, own: bool) -> None:
        start, close = self._opened_span
        if start < ts <= close:
            return  # inside the bar opened last: the lookup below would find it and return
        close_ns = self._close_ns
        i = bisect_left(close_ns, ts)  # the first bar closing at or after ts
        if i == self._opened or i >= len(close_ns) or close_ns[i] - self._bar_ns >= ts:
            return  # no bar left, already opened, or the bar has not started at ts (a data gap)
        if self._volume[i] <= 0.0:  # nothing traded: no open to fill at (a trade needs a size)
            return
        instrument = self.venue_cache.instrument(self._instrument_id)
        if instrument is None:
            return
        price, size = make_price(instrument, self._open[i]), make_qty(instrument, self._volume[i])
        trade_id = f"OPEN-{self.n_bars + 1}"
        if not own:  # the traded bar itself went through them already
            tick = TradeTick(self._instrument_id, price, size, AggressorSide.NO_AGGRESSOR, TradeId(trade_id), ts, ts)
            for module in self._before:
                module.pre_process(tick)
        # Match resting and due orders against the open and run the venue: for the traded bar before
        # its high, low and close; otherwise right before the engine would run it after this event.
        self._opened = i
        # Within both the bar's length and the previous close, any ts gives this same i above.
        self._opened_span = (max(close_ns[i] - self._bar_ns, close_ns[i - 1] if i else -1), close_ns[i])
        if self.fill_at_trade(self._instrument_id, price, size, trade_id, ts):
            self.n_bars += 1
            self.n_early += not own

    def process(self, ts_now: int) -> None:
        pass

    def log_diagnostics(self, logger) -> None:
        logger.info(f"next-open fills: {self.n_bars} bars opened before matching ({self.n_early} on an earlier event)")

    def reset(self) -> None:
        self._opened = -1
        self._opened_span = (0, -1)
        self.n_bars = 0
        self.n_early = 0
