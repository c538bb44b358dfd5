"""Incremental indicators with TA-Lib's conventions, so a named indicator is what its name says.

Each class consumes one value per bar and returns the indicator at that bar (NaN during its
lookback). After the lookback the values equal TA-Lib's functions of the same name to rounding
(``tests/test_indicators_talib.py`` checks every built-in plugin against TA-Lib):

- ``Ema(n)``: α = 2 / (n + 1), seeded with the simple mean of the first n values (TA-Lib's
  default), first value on the n-th input. Seeding with the first value instead (nautilus's
  ``ExponentialMovingAverage``) differs by a factor (1 − α)^k of the seed error for ever.
- ``WilderRsi(n)``: Wilder's RSI: average gain and loss seeded with the simple mean of the first
  n changes, then smoothed with α = 1 / n; first value on input n + 1. Returned as a ratio in
  [0, 1] (TA-Lib's RSI / 100); 0.5 while no close has changed yet (TA-Lib gives 0 there).
- ``Macd(fast, slow, signal)``: TA-Lib's MACD. Both EMAs start on input ``slow``: the slow one
  seeded with the mean of the first ``slow`` values, the fast one with the mean of the last
  ``fast`` of them; the signal is ``Ema(signal)`` of the MACD line, first value on input
  ``slow + signal − 1``.
"""

import math

NAN = math.nan


class Ema:
    """Exponential moving average, α = 2 / (period + 1), simple-mean seed (TA-Lib ``EMA``).

    ``skip`` values are ignored before the seed window starts (TA-Lib's MACD aligns its fast EMA
    with the slow one that way).
    """

    __slots__ = ("period", "alpha", "value", "_skip", "_count", "_sum")

    def __init__(self, period: int, skip: int = 0) -> None:
        self.period = period
        self.alpha = 2.0 / (period + 1.0)
        self.value = NAN
        self._skip = skip
        self._count = 0
        self._sum = 0.0

    @property
    def initialized(self) -> bool:
        return self.value == self.value

    def update(self, x: float) -> float:
        if self.value == self.value:  # seeded
            self.value = (x - self.value) * self.alpha + self.value  # TA-Lib's order of operations
            return self.value
        if self._skip > 0:
            self._skip -= 1
            return NAN
        self._count += 1
        self._sum += x
        if self._count == self.period:
            self.value = self._sum / self.period
        return self.value


class WilderRsi:
    """Wilder's relative strength index as a ratio in [0, 1] (TA-Lib ``RSI`` / 100)."""

    __slots__ = ("period", "value", "_prev", "_count", "_gain", "_loss")

    def __init__(self, period: int) -> None:
        self.period = period
        self.value = NAN
        self._prev = NAN
        self._count = 0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, x: float) -> float:
        prev = self._prev
        self._prev = x
        if prev != prev:  # first input: no change yet
            return NAN
        diff = x - prev
        n = self.period
        if self._count < n:
            self._count += 1
            if diff < 0:
                self._loss -= diff
            else:
                self._gain += diff
            if self._count < n:
                return NAN
            self._gain /= n
            self._loss /= n
        else:
            # TA-Lib's recursion, operation for operation: ((avg·(n − 1)) + change) / n
            self._gain *= n - 1
            self._loss *= n - 1
            if diff < 0:
                self._loss -= diff
            else:
                self._gain += diff
            self._gain /= n
            self._loss /= n
        total = self._gain + self._loss
        self.value = self._gain / total if total != 0.0 else 0.5
        return self.value


class Macd:
    """TA-Lib ``MACD``: (line, signal); both NaN until input ``slow + signal − 1``."""

    __slots__ = ("_fast", "_slow", "_signal", "line", "signal")

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self._fast = Ema(fast, skip=slow - fast)
        self._slow = Ema(slow)
        self._signal = Ema(signal)
        self.line = NAN
        self.signal = NAN

    def update(self, x: float) -> tuple[float, float]:
        fast = self._fast.update(x)
        slow = self._slow.update(x)
        if slow == slow:
            self.line = fast - slow
            self.signal = self._signal.update(self.line)
        return (self.line, self.signal) if self.signal == self.signal else (NAN, NAN)
