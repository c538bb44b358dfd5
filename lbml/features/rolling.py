"""Small O(1) rolling-window statistics shared by feature plugins.

Each keeps a fixed-length window in a ``deque`` plus running sums; ``push`` adds one value and
drops the oldest once the window is full. The same objects serve the streaming and the batch
path, so there is nothing to keep in sync.
"""

import math
from collections import deque


class RollingMoments:
    """Mean and sample standard deviation of the last ``window`` values."""

    __slots__ = ("window", "_values", "_sum", "_sq")

    def __init__(self, window: int) -> None:
        self.window = window
        self._values: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._sq = 0.0

    def push(self, x: float) -> None:
        values = self._values
        if len(values) == self.window:
            old = values[0]
            self._sum -= old
            self._sq -= old * old
        values.append(x)
        self._sum += x
        self._sq += x * x

    @property
    def full(self) -> bool:
        return len(self._values) == self.window

    @property
    def count(self) -> int:
        return len(self._values)

    @property
    def total(self) -> float:
        return self._sum

    def mean(self) -> float:
        n = len(self._values)
        return self._sum / n if n else math.nan

    def std(self) -> float:
        """Sample standard deviation (NaN with fewer than two values, 0 for a flat window)."""
        n = len(self._values)
        if n < 2:
            return math.nan
        mean = self._sum / n
        var = (self._sq - n * mean * mean) / (n - 1)
        return math.sqrt(var) if var > 0 else 0.0


class RollingPair:
    """Correlation and standard-deviation ratio of two series over the last ``window`` pairs."""

    __slots__ = ("window", "_pairs", "_sx", "_sy", "_sxx", "_syy", "_sxy")

    def __init__(self, window: int) -> None:
        self.window = window
        self._pairs: deque[tuple[float, float]] = deque(maxlen=window)
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0.0

    def push(self, x: float, y: float) -> None:
        pairs = self._pairs
        if len(pairs) == self.window:
            ox, oy = pairs[0]
            self._sx -= ox
            self._sy -= oy
            self._sxx -= ox * ox
            self._syy -= oy * oy
            self._sxy -= ox * oy
        pairs.append((x, y))
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._syy += y * y
        self._sxy += x * y

    @property
    def full(self) -> bool:
        return len(self._pairs) == self.window

    def _centered(self) -> tuple[float, float, float]:
        n = len(self._pairs)
        vx = self._sxx - self._sx * self._sx / n
        vy = self._syy - self._sy * self._sy / n
        cxy = self._sxy - self._sx * self._sy / n
        return max(vx, 0.0), max(vy, 0.0), cxy

    def correlation(self) -> float:
        """Pearson correlation; 0 when either series is flat over the window."""
        vx, vy, cxy = self._centered()
        if vx <= 0.0 or vy <= 0.0:
            return 0.0
        return max(-1.0, min(1.0, cxy / math.sqrt(vx * vy)))

    def std_ratio(self) -> float:
        """std(x) / std(y); NaN when y is flat over the window."""
        vx, vy, _ = self._centered()
        return math.sqrt(vx / vy) if vy > 0.0 else math.nan


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
