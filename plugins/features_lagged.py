"""Lagged-return layer (12 features, time of day as a sin/cos pair): returns, log returns,
return volatility, volume z-score and time of day.

Windows are in bars (the defaults assume 1-minute bars: 1, 5, 15, 60, 240 and 1,440 bars are 1m,
5m, 15m, 1h, 4h and 24h). Returns are ratios, the z-score is unitless and the clock features are
on the unit circle: scale-free throughout.
"""

import math
from collections import deque

from pydantic import Field, field_validator

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureParams, FeaturePlugin
from lbml.features.rolling import RollingMoments
from lbml.hookspecs import hookimpl

_NS_PER_DAY = 86_400 * 1_000_000_000
_TWO_PI = 2.0 * math.pi


class LaggedParams(FeatureParams):
    return_windows: tuple[int, ...] = Field((1, 5, 15, 60, 240, 1440), min_length=1)
    log_return_windows: tuple[int, ...] = Field((1, 5), min_length=1)
    std_windows: tuple[int, ...] = Field((15, 60), min_length=1)
    volume_window: int = Field(60, ge=2, le=100_000)

    @field_validator("return_windows", "log_return_windows")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 or k > 100_000 for k in v) or len(set(v)) != len(v):
            raise ValueError("windows must be distinct integers in [1, 100000]")
        return v

    @field_validator("std_windows")
    @classmethod
    def _at_least_two(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 2 or k > 100_000 for k in v) or len(set(v)) != len(v):
            raise ValueError("windows must be distinct integers in [2, 100000]")
        return v


class LaggedFeatures(FeaturePlugin):
    """Multi-horizon returns, return volatility, volume z-score and cyclical time of day."""

    name = "lagged"
    version = "1"
    Params = LaggedParams

    def output_names(self) -> tuple[str, ...]:
        p = self.params
        return (
            *(f"lag_ret_{k}" for k in p.return_windows),
            *(f"lag_logret_{k}" for k in p.log_return_windows),
            *(f"lag_ret_std_{k}" for k in p.std_windows),
            f"lag_volume_z_{p.volume_window}",
            "lag_time_of_day_sin",
            "lag_time_of_day_cos",
        )

    def warmup_bars(self) -> int:
        p = self.params
        return max(
            max(p.return_windows) + 1,
            max(p.log_return_windows) + 1,
            max(p.std_windows) + 1,
            p.volume_window,
        )

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        d = {f"lag_ret_{k}": FeatureDoc(f"close(t) / close(t−{k}) − 1", "simple return") for k in p.return_windows}
        d |= {
            f"lag_logret_{k}": FeatureDoc(f"ln(close(t) / close(t−{k}))", "log return")
            for k in p.log_return_windows
        }
        d |= {
            f"lag_ret_std_{k}": FeatureDoc(f"sample std of the last {k} 1-bar log returns", "log return")
            for k in p.std_windows
        }
        d[f"lag_volume_z_{p.volume_window}"] = FeatureDoc(
            f"(volume − mean) / std over the last {p.volume_window} bars (0 when flat)", "z-score"
        )
        d["lag_time_of_day_sin"] = FeatureDoc("sin(2π · seconds since 00:00 UTC of the bar close / 86400)", "[-1, 1]")
        d["lag_time_of_day_cos"] = FeatureDoc("cos(2π · seconds since 00:00 UTC of the bar close / 86400)", "[-1, 1]")
        return d

    def reset(self) -> None:
        p = self.params
        longest = max(max(p.return_windows), max(p.log_return_windows))
        self._closes: deque[float] = deque(maxlen=longest + 1)
        self._stds = tuple(RollingMoments(k) for k in p.std_windows)
        self._volume = RollingMoments(p.volume_window)
        # Negative deque offsets of the lagged closes (computed once, used every bar).
        self._ret_offsets = tuple(-1 - k for k in p.return_windows)
        self._log_offsets = tuple(-1 - k for k in p.log_return_windows)
        self._warm = False  # True once every return window has its lagged close

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        closes = self._closes
        close = bar.close
        if closes:
            r = math.log(close / closes[-1])
            stds = [s.push_std(r) for s in self._stds]
        else:
            stds = [NAN] * len(self._stds)
        closes.append(close)
        if self._warm or len(closes) == closes.maxlen:
            self._warm = True
            rets = [close / closes[i] - 1.0 for i in self._ret_offsets]
            logs = [math.log(close / closes[i]) for i in self._log_offsets]
        else:
            n = len(closes)
            rets = [close / closes[i] - 1.0 if n > -1 - i else NAN for i in self._ret_offsets]
            logs = [math.log(close / closes[i]) if n > -1 - i else NAN for i in self._log_offsets]
        volume_z = self._volume.push_zscore(bar.volume)
        angle = _TWO_PI * (bar.ts % _NS_PER_DAY) / _NS_PER_DAY
        return (*rets, *logs, *stds, volume_z, math.sin(angle), math.cos(angle))


@hookimpl
def lbml_register_features() -> list[type]:
    return [LaggedFeatures]
