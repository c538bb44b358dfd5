"""Technical layer (10 features): EMA distances, RSI, MACD, Bollinger bands.

Every named indicator is computed as TA-Lib computes it (``lbml.features.indicators``): EMAs seeded
with the simple mean of their first n closes, Wilder's RSI (smoothing 1 / n, not an EMA's
2 / (n + 1)), TA-Lib's MACD, and Bollinger bands as TA-Lib's ``BBANDS`` (SMA ± k × population
std) applied to the typical price. After ``warmup_bars`` every output equals its TA-Lib
counterpart to rounding (``tests/test_indicators_talib.py``). Every output is scale-free: EMA
distances are log ratios to the close, band distances and MACD are divided by the close, RSI and
the band position are bounded ratios.

The Bollinger bands run nautilus's own kernels (``fast_mean``, ``fast_std_with_mean``: what
``BollingerBands.update_raw`` computes) on a preallocated ring buffer instead of through the
indicator, which copies its window ``deque`` into two fresh arrays per bar (most of this plugin's
cost). ``tests/test_features_rolling.py`` checks the bands equal ``BollingerBands`` bit for bit.
"""

import math

from pydantic import Field, model_validator

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureParams, FeaturePlugin
from lbml.features.indicators import Ema, Macd, WilderRsi
from lbml.features.rolling import OrderedWindow
from lbml.hookspecs import hookimpl
from lbml.nautilus.stats import fast_mean, fast_std_with_mean


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
    """EMA 12/26/50 distance, Wilder RSI 14, MACD line/signal/histogram, Bollinger upper/lower/position."""

    name = "technical"
    version = "2"
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
        # TA-Lib's lookbacks + 1: EMA n − 1, RSI n (it needs n changes), MACD slow + signal − 2.
        return max(*p.ema_periods, p.rsi_period + 1, p.macd_slow + p.macd_signal - 1, p.bb_period)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        d = {
            f"tech_ema_dist_{n}": FeatureDoc(
                f"ln(close / EMA{n}(close)); EMA α = 2/{n + 1}, seeded with the mean of the first {n} closes "
                "(TA-Lib EMA)",
                "log ratio",
            )
            for n in p.ema_periods
        }
        n = p.rsi_period
        d[f"tech_rsi_{n}"] = FeatureDoc(
            f"Wilder RSI({n}) / 100 = G / (G + L), G and L the averages of close-to-close gains and losses "
            f"seeded with the mean of the first {n} changes, then avg ← (avg·{n - 1} + x) / {n} (TA-Lib RSI / 100); "
            "0.5 before any close has changed",
            "ratio in [0, 1]",
        )
        d["tech_macd"] = FeatureDoc(
            f"(EMA{p.macd_fast}(close) - EMA{p.macd_slow}(close)) / close, TA-Lib MACD (both EMAs start on bar "
            f"{p.macd_slow}: the slow one seeded with the mean of {p.macd_slow} closes, the fast one with the "
            f"mean of the last {p.macd_fast} of them)",
            "fraction of price",
        )
        d["tech_macd_signal"] = FeatureDoc(
            f"EMA{p.macd_signal}(MACD) / close, seeded with the mean of the first {p.macd_signal} MACD values",
            "fraction of price",
        )
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
        self._emas = tuple(Ema(n) for n in p.ema_periods)
        self._rsi = WilderRsi(p.rsi_period)
        self._macd = Macd(p.macd_fast, p.macd_slow, p.macd_signal)
        self._bb = OrderedWindow(p.bb_period)
        self._bb_k = float(p.bb_k)

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        close = bar.close
        e1, e2, e3 = self._emas
        v1, v2, v3 = e1.update(close), e2.update(close), e3.update(close)
        rsi_value = self._rsi.update(close)
        line, signal = self._macd.update(close)
        upper, lower = bollinger_bands(self._bb, (bar.high + bar.low + close) / 3.0, self._bb_k)

        log_close = math.log(close)
        d1 = log_close - math.log(v1) if v1 == v1 else NAN
        d2 = log_close - math.log(v2) if v2 == v2 else NAN
        d3 = log_close - math.log(v3) if v3 == v3 else NAN
        m = line / close
        s = signal / close
        m_hist = m - s
        if self._bb.full:
            width = upper - lower
            position = (close - lower) / width if width > 0 else 0.5
            return (d1, d2, d3, rsi_value, m, s, m_hist, (upper - close) / close, (lower - close) / close, position)
        return (d1, d2, d3, rsi_value, m, s, m_hist, NAN, NAN, NAN)


@hookimpl
def lbml_register_features() -> list[type]:
    return [TechnicalFeatures]
