"""Small O(1) rolling-window statistics shared by feature plugins.

Each keeps a fixed-length window in a ``deque`` plus running sums; ``push`` adds one value and
drops the oldest once the window is full. The same objects serve the streaming and the batch
path, so there is nothing to keep in sync.

They run once per bar per feature, so they are written for CPython speed: ``__slots__``, locals
instead of repeated attribute lookups, no per-call allocations. Every result is bit-identical to
the straightforward formula it replaces (``tests/test_features_rolling.py`` checks them with ``==``).
"""

import math
from collections import deque

import numpy as np


class _Window:
    """What every running-sum window answers: how many values, their sum and mean."""

    __slots__ = ()
    _values: deque
    _sum: float

    @property
    def count(self) -> int:
        return len(self._values)

    @property
    def total(self) -> float:
        return self._sum

    def mean(self) -> float:
        n = len(self._values)
        return self._sum / n if n else math.nan


class RollingSum(_Window):
    """Running sum and mean of the last ``window`` values (no second moment)."""

    __slots__ = ("window", "_values", "_sum", "full")

    def __init__(self, window: int) -> None:
        self.window = window
        self._values: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self.full = False  # True once ``window`` values were pushed

    def push(self, x: float) -> None:
        values = self._values
        if self.full:
            self._sum -= values[0]
        values.append(x)
        self._sum += x
        if not self.full:
            self.full = len(values) == self.window

    def push_mean(self, x: float) -> float:
        """``push(x)``, then the window mean once full (NaN before): one call per bar."""
        values = self._values
        if self.full:
            self._sum -= values[0]
            values.append(x)
            self._sum += x
            return self._sum / self.window
        values.append(x)
        self._sum += x
        self.full = len(values) == self.window
        return self._sum / self.window if self.full else math.nan


class RollingMoments(_Window):
    """Mean and sample standard deviation of the last ``window`` values."""

    __slots__ = ("window", "_values", "_sum", "_sq", "full")

    def __init__(self, window: int) -> None:
        self.window = window
        self._values: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._sq = 0.0
        self.full = False  # True once ``window`` values were pushed

    def push(self, x: float) -> None:
        values = self._values
        if self.full:
            old = values[0]
            self._sum -= old
            self._sq -= old * old
        values.append(x)
        self._sum += x
        self._sq += x * x
        if not self.full:
            self.full = len(values) == self.window

    def std(self) -> float:
        """Sample standard deviation (NaN with fewer than two values, 0 for a flat window)."""
        n = len(self._values)
        if n < 2:
            return math.nan
        mean = self._sum / n
        var = (self._sq - n * mean * mean) / (n - 1)
        return math.sqrt(var) if var > 0 else 0.0

    def push_std(self, x: float) -> float:
        """``push(x)``, then ``std()`` once full (NaN before): one call per bar."""
        self.push(x)
        if not self.full:
            return math.nan
        n = self.window
        mean = self._sum / n
        var = (self._sq - n * mean * mean) / (n - 1)
        return math.sqrt(var) if var > 0 else 0.0

    def push_zscore(self, x: float) -> float:
        """``push(x)``, then ``(x - mean()) / std()`` once full (NaN before; 0 for a flat window)."""
        self.push(x)
        if not self.full:
            return math.nan
        n = self.window
        mean = self._sum / n
        var = (self._sq - n * mean * mean) / (n - 1)
        sd = math.sqrt(var) if var > 0 else 0.0
        return (x - mean) / sd if sd > 0 else 0.0


class RollingPair:
    """Correlation and standard-deviation ratio of two series over the last ``window`` pairs."""

    __slots__ = ("window", "_xs", "_ys", "_sx", "_sy", "_sxx", "_syy", "_sxy", "full")

    def __init__(self, window: int) -> None:
        self.window = window
        self._xs: deque[float] = deque(maxlen=window)
        self._ys: deque[float] = deque(maxlen=window)
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0.0
        self.full = False  # True once ``window`` pairs were pushed

    def push(self, x: float, y: float) -> None:
        xs, ys = self._xs, self._ys
        if self.full:
            ox = xs[0]
            oy = ys[0]
            self._sx -= ox
            self._sy -= oy
            self._sxx -= ox * ox
            self._syy -= oy * oy
            self._sxy -= ox * oy
        xs.append(x)
        ys.append(y)
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._syy += y * y
        self._sxy += x * y
        if not self.full:
            self.full = len(xs) == self.window

    def _centered(self) -> tuple[float, float, float]:
        n = len(self._xs)
        sx, sy = self._sx, self._sy
        vx = self._sxx - sx * sx / n
        vy = self._syy - sy * sy / n
        cxy = self._sxy - sx * sy / n
        return max(vx, 0.0), max(vy, 0.0), cxy

    def correlation(self) -> float:
        """Pearson correlation; 0 when either series is flat over the window."""
        return self.correlation_and_ratio()[0]

    def std_ratio(self) -> float:
        """std(x) / std(y); NaN when y is flat over the window."""
        return self.correlation_and_ratio()[1]

    def correlation_and_ratio(self) -> tuple[float, float]:
        """Return ``(correlation(), std_ratio())`` from one pass over the running sums."""
        vx, vy, cxy = self._centered()
        corr = 0.0 if vx <= 0.0 or vy <= 0.0 else max(-1.0, min(1.0, cxy / math.sqrt(vx * vy)))
        return corr, (math.sqrt(vx / vy) if vy > 0.0 else math.nan)


class RollingExtreme:
    """Bars since the maximum of the last ``window`` values (monotonic deque, amortised O(1))."""

    __slots__ = ("window", "_dq", "_i")

    def __init__(self, window: int) -> None:
        self.window = window
        self._dq: deque[tuple[int, float]] = deque()
        self._i = -1

    def push(self, x: float) -> None:
        self._i += 1
        dq = self._dq
        while dq and dq[-1][1] <= x:
            dq.pop()
        dq.append((self._i, x))
        if dq[0][0] <= self._i - self.window:
            dq.popleft()

    def bars_since_max(self) -> int:
        return self._i - self._dq[0][0]

    def maximum(self) -> float:
        return self._dq[0][1]


class RollingMaxDrawdown:
    """Largest fall from a running peak within the last ``window`` values, amortised O(1).

    ``value()`` equals the direct scan ``1 - min_i x_i / max(x_first..x_i)`` over the window
    bit for bit: every ratio it keeps is computed from the same two operands as the scan, and the
    scan is rerun only when the peak behind the current minimum ratio leaves the window. Until
    then, dropping the oldest value can only raise the other ratios (their peaks can only fall),
    so the minimum stands; a new value adds one ratio against the window maximum. Values must be
    positive (prices).
    """

    __slots__ = ("window", "_values", "_maxima", "_i", "_worst", "_worst_peak")

    def __init__(self, window: int) -> None:
        self.window = window
        self._values: deque[float] = deque(maxlen=window)
        self._maxima: deque[tuple[int, float]] = deque()  # (index, value), values decreasing
        self._i = -1
        self._worst = 1.0  # min over the window of x_i / running peak (1.0: no fall)
        self._worst_peak = -1  # index of the peak behind ``_worst``; -1 when ``_worst`` is 1.0

    @property
    def full(self) -> bool:
        return len(self._values) == self.window

    def push(self, x: float) -> None:
        i = self._i = self._i + 1
        values = self._values
        values.append(x)
        maxima = self._maxima
        while maxima and maxima[-1][1] <= x:
            maxima.pop()
        maxima.append((i, x))
        start = i - self.window + 1  # index of the oldest value in the window
        if maxima[0][0] < start:
            maxima.popleft()
        if 0 < start == self._worst_peak + 1:
            # The peak of the minimum ratio just left the window: scan again.
            self._rescan(start)
            return
        peak_index, peak = maxima[0]
        if x < peak:  # the scan divides only when x is not a new running high
            ratio = x / peak
            if ratio <= self._worst:
                self._worst = ratio
                self._worst_peak = peak_index

    def _rescan(self, start: int) -> None:
        values = self._values
        peak = values[0]
        peak_index = start
        worst = 1.0
        worst_peak = -1
        i = start
        for c in values:
            if c > peak:
                peak = c
                peak_index = i
            else:
                ratio = c / peak
                if ratio < worst:
                    worst = ratio
                    worst_peak = peak_index
                elif ratio == worst and worst_peak >= 0:
                    worst_peak = peak_index
            i += 1
        self._worst = worst
        self._worst_peak = worst_peak

    def value(self) -> float:
        """Return ``1 - min ratio`` over the values pushed so far (at most ``window`` of them)."""
        return 1.0 - self._worst


class OrderedWindow:
    """The last ``window`` values as a contiguous, oldest-first ``float64`` array view.

    A ring buffer written twice (at ``k`` and ``k + window``), so ``view()`` is a slice of one
    preallocated array: no per-call copy of a ``deque`` into a new array. Valid once ``full``.
    """

    __slots__ = ("window", "_data", "_views", "_pos", "full")

    def __init__(self, window: int) -> None:
        self.window = window
        self._data = np.zeros(2 * window, dtype=np.float64)
        # _views[k]: the window whose newest value sits at slot k.
        self._views = [self._data[k + 1 : k + 1 + window] for k in range(window)]
        self._pos = -1
        self.full = False

    def __deepcopy__(self, memo: dict[int, object]) -> "OrderedWindow":
        # A plain deep copy turns each of ``_views`` into an array of its own, no longer a view
        # of ``_data``: pushes would then never reach the returned windows.
        clone = OrderedWindow(self.window)
        clone._data[:] = self._data
        clone._pos = self._pos
        clone.full = self.full
        memo[id(self)] = clone
        return clone

    def push(self, x: float) -> np.ndarray:
        """Append ``x`` and return the window view (oldest first; meaningful once ``full``)."""
        pos = self._pos + 1
        if pos == self.window:
            pos = 0
        elif pos == self.window - 1:
            self.full = True
        self._pos = pos
        data = self._data
        data[pos] = x
        data[pos + self.window] = x
        return self._views[pos]
