"""Technical entry filters for ``HybridFilter``: trend, RSI band, volatility regime, volume.

Each filter is updated once per closed bar with that bar's values only (no look-ahead) and says
which sides it allows: ``+1`` long, ``-1`` short. ``EntryFilters.side()`` is the side every enabled
filter allows (0 when they do not all agree, or while any is still warming up).

- ``trend``: EMA(``trend_fast``) of the close above EMA(``trend_slow``) allows longs, below shorts.
- ``rsi``: Wilder's RSI(``rsi_period``) inside ``rsi_long`` allows longs, inside ``rsi_short`` shorts.
- ``volatility``: σ of one-bar log returns over ``vol_fast`` bars over σ over ``vol_slow`` bars
  inside ``vol_ratio`` (both sides): trade neither a dead nor a panicking market.
- ``volume``: the bar's volume at least ``volume_ratio`` × its mean over the previous
  ``volume_window`` bars (both sides).
"""

import math
from collections import deque

FILTERS = ("trend", "rsi", "volatility", "volume")


class _RollingMoments:
    def __init__(self, window: int) -> None:
        self.window = window
        self.values: deque[float] = deque()
        self.total = 0.0
        self.total_sq = 0.0

    def push(self, x: float) -> None:
        self.values.append(x)
        self.total += x
        self.total_sq += x * x
        if len(self.values) > self.window:
            old = self.values.popleft()
            self.total -= old
            self.total_sq -= old * old

    @property
    def full(self) -> bool:
        return len(self.values) == self.window

    @property
    def mean(self) -> float:
        return self.total / len(self.values)

    @property
    def std(self) -> float:
        n = len(self.values)
        return math.sqrt(max(self.total_sq / n - (self.total / n) ** 2, 0.0))


class EntryFilters:
    """The enabled filters over the bars seen so far (see the module notes for each rule)."""

    def __init__(self, config) -> None:
        unknown = set(config.filters) - set(FILTERS)
        if unknown or not config.filters:
            raise ValueError(f"filters: choose among {', '.join(FILTERS)} (got {', '.join(config.filters) or 'none'})")
        if not {"trend", "rsi"} & set(config.filters):
            raise ValueError("filters: enable trend or rsi (volatility and volume allow both sides: no direction)")
        self.config = config
        self._fast = self._slow = math.nan
        self._a_fast = 2.0 / (config.trend_fast + 1)
        self._a_slow = 2.0 / (config.trend_slow + 1)
        self._gain = self._loss = 0.0
        self._rsi_n = 0
        self._prev_close = math.nan
        self._ret_fast = _RollingMoments(config.vol_fast)
        self._ret_slow = _RollingMoments(config.vol_slow)
        self._volume = _RollingMoments(config.volume_window)
        self._last_volume = math.nan
        self.n_bars = 0

    def update(self, close: float, volume: float) -> None:
        """Take the next closed bar's close and volume."""
        c = self.config
        self.n_bars += 1
        if not math.isnan(self._last_volume):
            self._volume.push(self._last_volume)  # the mean of the bars before this one
        self._last_volume = volume
        self._fast = close if math.isnan(self._fast) else self._fast + self._a_fast * (close - self._fast)
        self._slow = close if math.isnan(self._slow) else self._slow + self._a_slow * (close - self._slow)
        if not math.isnan(self._prev_close) and self._prev_close > 0 and close > 0:
            change = close - self._prev_close
            gain, loss = max(change, 0.0), max(-change, 0.0)
            self._rsi_n += 1
            if self._rsi_n <= c.rsi_period:  # seed with the simple mean, then Wilder's smoothing
                self._gain += gain / c.rsi_period
                self._loss += loss / c.rsi_period
            else:
                self._gain += (gain - self._gain) / c.rsi_period
                self._loss += (loss - self._loss) / c.rsi_period
            r = math.log(close / self._prev_close)
            self._ret_fast.push(r)
            self._ret_slow.push(r)
        self._prev_close = close

    def rsi(self) -> float:
        if self._rsi_n < self.config.rsi_period:
            return math.nan
        if self._loss == 0.0:
            return 100.0 if self._gain > 0.0 else 50.0
        return 100.0 - 100.0 / (1.0 + self._gain / self._loss)

    def allowed(self) -> dict[str, set[int]]:
        """Per enabled filter, the sides it allows now (empty while it warms up)."""
        c = self.config
        out: dict[str, set[int]] = {}
        for name in c.filters:
            sides: set[int] = set()
            if name == "trend" and self.n_bars >= c.trend_slow:
                sides = {1} if self._fast > self._slow else {-1} if self._fast < self._slow else set()
            elif name == "rsi":
                rsi = self.rsi()
                if not math.isnan(rsi):
                    sides = {s for s, (lo, hi) in ((1, c.rsi_long), (-1, c.rsi_short)) if lo <= rsi <= hi}
            elif name == "volatility" and self._ret_slow.full and self._ret_slow.std > 0.0:
                ratio = self._ret_fast.std / self._ret_slow.std
                sides = {1, -1} if c.vol_ratio[0] <= ratio <= c.vol_ratio[1] else set()
            elif name == "volume" and self._volume.full and self._volume.mean > 0.0:
                sides = {1, -1} if self._last_volume >= c.volume_ratio * self._volume.mean else set()
            out[name] = sides
        return out

    def side(self) -> int:
        """Return the one side every enabled filter allows (+1 / -1), else 0."""
        common = {1, -1}
        for sides in self.allowed().values():
            common &= sides
        return common.pop() if len(common) == 1 else 0
