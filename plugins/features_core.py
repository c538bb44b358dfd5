"""Core price/volume features: lagged log returns, realised volatility, EMA distance, volume z-score.

All outputs are scale-free (log returns, ratios, z-scores, distances in volatility units), so a
model trained on one price level transfers to another.
"""

import math
from collections import deque

from pydantic import Field

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureParams, FeaturePlugin
from lbml.features.indicators import Ema
from lbml.hookspecs import hookimpl


class CoreFeaturesParams(FeatureParams):
    return_lags: tuple[int, ...] = Field((1, 5, 15), min_length=1)
    vol_window: int = Field(15, ge=2, le=10_000)
    ema_period: int = Field(20, ge=2, le=10_000)
    volume_window: int = Field(60, ge=2, le=10_000)


class CoreFeatures(FeaturePlugin):
    """A handful of scale-free features computed incrementally from bars."""

    name = "core"
    version = "2"
    Params = CoreFeaturesParams

    def output_names(self) -> tuple[str, ...]:
        p = self.params
        return (
            *(f"core_logret_{k}" for k in p.return_lags),
            f"core_vol_{p.vol_window}",
            f"core_ema_dist_{p.ema_period}",
            "core_range_vol",
            f"core_volume_z_{p.volume_window}",
        )

    def warmup_bars(self) -> int:
        p = self.params
        return max(max(p.return_lags) + 1, p.vol_window + 1, p.ema_period, p.volume_window)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        docs = {
            f"core_logret_{k}": FeatureDoc(f"ln(close_t / close_(t-{k}))", "log return")
            for k in p.return_lags
        }
        docs[f"core_vol_{p.vol_window}"] = FeatureDoc(
            f"sample std of 1-bar log returns over {p.vol_window} bars", "log return"
        )
        docs[f"core_ema_dist_{p.ema_period}"] = FeatureDoc(
            f"ln(close / EMA{p.ema_period}(close)) / vol; EMA α = 2/{p.ema_period + 1}, seeded with the mean of "
            f"the first {p.ema_period} closes (TA-Lib EMA)",
            "volatility units",
        )
        docs["core_range_vol"] = FeatureDoc("ln(high / low) / vol", "volatility units")
        docs[f"core_volume_z_{p.volume_window}"] = FeatureDoc(
            f"(volume - mean) / std over {p.volume_window} bars", "z-score"
        )
        return docs

    def reset(self) -> None:
        p = self.params
        self._closes: deque[float] = deque(maxlen=max(p.return_lags) + 1)
        self._rets: deque[float] = deque(maxlen=p.vol_window)
        self._ret_sum = 0.0
        self._ret_sq = 0.0
        self._volumes: deque[float] = deque(maxlen=p.volume_window)
        self._vol_sum = 0.0
        self._vol_sq = 0.0
        self._ema = Ema(p.ema_period)

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        p = self.params
        closes = self._closes
        if closes:
            r = math.log(bar.close / closes[-1])
            if len(self._rets) == self._rets.maxlen:
                old = self._rets[0]
                self._ret_sum -= old
                self._ret_sq -= old * old
            self._rets.append(r)
            self._ret_sum += r
            self._ret_sq += r * r
        closes.append(bar.close)
        if len(self._volumes) == self._volumes.maxlen:
            old = self._volumes[0]
            self._vol_sum -= old
            self._vol_sq -= old * old
        self._volumes.append(bar.volume)
        self._vol_sum += bar.volume
        self._vol_sq += bar.volume * bar.volume
        ema = self._ema.update(bar.close)

        n_closes = len(closes)
        lagged = tuple(
            math.log(bar.close / closes[-1 - k]) if n_closes > k else NAN for k in p.return_lags
        )
        vol = _std(self._ret_sum, self._ret_sq, len(self._rets)) if len(self._rets) == p.vol_window else NAN
        ema_dist = (
            math.log(bar.close / ema) / vol
            if ema == ema and vol > 0
            else NAN
        )
        range_vol = math.log(bar.high / bar.low) / vol if vol > 0 else NAN
        n_vol = len(self._volumes)
        if n_vol == p.volume_window:
            sd = _std(self._vol_sum, self._vol_sq, n_vol)
            volume_z = (bar.volume - self._vol_sum / n_vol) / sd if sd > 0 else 0.0
        else:
            volume_z = NAN
        return (*lagged, vol, ema_dist, range_vol, volume_z)


def _std(total: float, total_sq: float, n: int) -> float:
    mean = total / n
    var = (total_sq - n * mean * mean) / (n - 1)
    return math.sqrt(var) if var > 0 else 0.0


@hookimpl
def lbml_register_features() -> list[type]:
    return [CoreFeatures]
