"""Technical layer (10 features): EMA distances, RSI, MACD, Bollinger bands.

Built on nautilus_trader's Cython indicators fed through ``update_raw``. Every output is scale-free:
EMA distances are log ratios to the close, band distances and MACD are divided by the close, RSI
and the band position are bounded ratios.

The Bollinger bands run nautilus's own kernels (``fast_mean``, ``fast_std_with_mean``: what
``BollingerBands.update_raw`` computes) on a preallocated ring buffer instead of through the
indicator, which copies its window ``deque`` into two fresh arrays per bar (most of this plugin's
cost). ``tests/test_features_rolling.py`` checks the bands equal ``BollingerBands`` bit for bit.
"""

import math

from nautilus_trader.core.stats import fast_mean, fast_std_with_mean
from nautilus_trader.indicators import (
    ExponentialMovingAverage,
    MovingAverageConvergenceDivergence,
    RelativeStrengthIndex,
)
from pydantic import Field, model_validator

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureParams, FeaturePlugin
from lbml.features.rolling import OrderedWindow
from lbml.hookspecs import hookimpl


def bollinger_bands(window: OrderedWindow, typical: float, k: float) -> tuple[float, float]:
    """Push ``typical`` and return (upper, lower) as nautilus ``BollingerBands`` does (NaN until full).

    SMA of the window ± k × population std about that SMA, from nautilus's ``fast_mean`` and
    ``fast_std_with_mean`` over the same values in the same order.
    """
    view = window.push(typical)
    if not window.full:
        return NAN, NAN
    mean = fast_mean(view)
    std = fast_std_with_mean(view, mean)
    return mean + k * std, mean - k * std


class TechnicalParams(FeatureParams):
    ema_periods: tuple[int, int, int] = (12, 26, 50)
    rsi_period: int = Field(14, ge=2, le=10_000)
    macd_fast: int = Field(12, ge=2, le=10_000)
    macd_slow: int = Field(26, ge=3, le=10_000)
    macd_signal: int = Field(9, ge=2, le=10_000)
    bb_period: int = Field(20, ge=2, le=10_000)
    bb_k: float = Field(2.0, gt=0, le=10)

    @model_validator(mode="after")
    def _check(self) -> "TechnicalParams":
        if any(p < 2 for p in self.ema_periods):
            raise ValueError("ema_periods must all be >= 2")
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast must be < macd_slow")
        return self


class TechnicalFeatures(FeaturePlugin):
    """EMA 12/26/50 distance, RSI 14, MACD line/signal/histogram, Bollinger upper/lower/position."""

    name = "technical"
    version = "1"
    Params = TechnicalParams

    def output_names(self) -> tuple[str, ...]:
        p = self.params
        return (
            *(f"tech_ema_dist_{n}" for n in p.ema_periods),
            f"tech_rsi_{p.rsi_period}",
            "tech_macd",
            "tech_macd_signal",
            "tech_macd_hist",
            "tech_bb_upper",
            "tech_bb_lower",
            "tech_bb_position",
        )

    def warmup_bars(self) -> int:
        p = self.params
        # RSI starts on the second close; MACD's signal EMA starts once the slow EMA is ready.
        return max(*p.ema_periods, p.rsi_period + 1, p.macd_slow + p.macd_signal - 1, p.bb_period)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        d = {
            f"tech_ema_dist_{n}": FeatureDoc(f"ln(close / EMA{n}(close))", "log ratio")
            for n in p.ema_periods
        }
        d[f"tech_rsi_{p.rsi_period}"] = FeatureDoc(
            f"EMA{p.rsi_period}(gains) / (EMA{p.rsi_period}(gains) + EMA{p.rsi_period}(losses)) of close changes",
            "ratio in [0, 1]",
        )
        d["tech_macd"] = FeatureDoc(
            f"(EMA{p.macd_fast}(close) - EMA{p.macd_slow}(close)) / close", "fraction of price"
        )
        d["tech_macd_signal"] = FeatureDoc(f"EMA{p.macd_signal}(MACD) / close", "fraction of price")
        d["tech_macd_hist"] = FeatureDoc("(MACD - signal) / close", "fraction of price")
        band = f"SMA{p.bb_period}(typical) ± {p.bb_k:g}·std{p.bb_period}(typical), typical = (H+L+C)/3"
        d["tech_bb_upper"] = FeatureDoc(f"(upper - close) / close, {band}", "fraction of price")
        d["tech_bb_lower"] = FeatureDoc(f"(lower - close) / close, {band}", "fraction of price")
        d["tech_bb_position"] = FeatureDoc(
            "(close - lower) / (upper - lower); 0.5 when the band is flat", "ratio (0..1 inside the band)"
        )
        return d

    def reset(self) -> None:
        p = self.params
        self._emas = tuple(ExponentialMovingAverage(n) for n in p.ema_periods)
        self._rsi = RelativeStrengthIndex(p.rsi_period)
        self._macd = MovingAverageConvergenceDivergence(p.macd_fast, p.macd_slow)
        self._signal = ExponentialMovingAverage(p.macd_signal)
        self._bb = OrderedWindow(p.bb_period)
        self._bb_k = float(p.bb_k)
        self._rsi_period = p.rsi_period
        self._count = 0

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        close = bar.close
        self._count += 1
        e1, e2, e3 = self._emas
        e1.update_raw(close)
        e2.update_raw(close)
        e3.update_raw(close)
        rsi = self._rsi
        rsi.update_raw(close)
        macd = self._macd
        macd.update_raw(close)
        signal = self._signal
        if macd.initialized:
            signal.update_raw(macd.value)
        upper, lower = bollinger_bands(self._bb, (bar.high + bar.low + close) / 3.0, self._bb_k)

        log_close = math.log(close)
        d1 = log_close - math.log(e1.value) if e1.initialized else NAN
        d2 = log_close - math.log(e2.value) if e2.initialized else NAN
        d3 = log_close - math.log(e3.value) if e3.initialized else NAN
        rsi_value = rsi.value if rsi.initialized and self._count > self._rsi_period else NAN
        if signal.initialized:
            m = macd.value / close
            s = signal.value / close
            m_hist = m - s
        else:
            m = s = m_hist = NAN
        if self._bb.full:
            width = upper - lower
            position = (close - lower) / width if width > 0 else 0.5
            return (d1, d2, d3, rsi_value, m, s, m_hist, (upper - close) / close, (lower - close) / close, position)
        return (d1, d2, d3, rsi_value, m, s, m_hist, NAN, NAN, NAN)


@hookimpl
def lbml_register_features() -> list[type]:
    return [TechnicalFeatures]
