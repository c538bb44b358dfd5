"""Cross-asset layer (5 features): reference-instrument correlation, lagged reference returns,
volatility ratio, and the latest known funding rate.

Reference bars (BTC for BNB) arrive through ``on_reference_bar`` before the traded bar of the same
close; each traded bar uses the reference close known *as of* its own close, so missing reference
bars never shift the alignment. Funding is an as-of join as well: the latest settled rate, never the
next one. The two groups are separate plugins because they need different inputs (klines data often
has a reference instrument but no funding history).
"""

import math
from collections import deque

from pydantic import Field

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureInput, FeatureParams, FeaturePlugin
from lbml.features.rolling import RollingPair
from lbml.hookspecs import hookimpl


class CrossAssetParams(FeatureParams):
    window: int = Field(60, ge=3, le=100_000, description="bars for correlation and volatility ratio")
    lags: tuple[int, ...] = Field((1, 2), min_length=1)


class CrossAssetFeatures(FeaturePlugin):
    """Rolling correlation with the reference, its lagged returns and the volatility ratio."""

    name = "cross_asset"
    version = "1"
    inputs = frozenset({FeatureInput.BARS, FeatureInput.REFERENCE})
    Params = CrossAssetParams

    def output_names(self) -> tuple[str, ...]:
        p = self.params
        return (
            f"xa_ref_corr_{p.window}",
            *(f"xa_ref_ret_lag{k}" for k in p.lags),
            f"xa_vol_ratio_{p.window}",
        )

    def warmup_bars(self) -> int:
        p = self.params
        return max(p.window + 1, max(p.lags) + 2)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        asof = "reference close as of the traded bar's close"
        d = {
            f"xa_ref_corr_{p.window}": FeatureDoc(
                f"Pearson correlation of 1-bar log returns, traded vs reference ({asof}), last {p.window} bars",
                "correlation in [-1, 1]",
            )
        }
        d |= {
            f"xa_ref_ret_lag{k}": FeatureDoc(f"reference 1-bar log return {k} bar(s) before t ({asof})", "log return")
            for k in p.lags
        }
        d[f"xa_vol_ratio_{p.window}"] = FeatureDoc(
            f"std(traded log returns) / std(reference log returns) over {p.window} bars", "ratio"
        )
        return d

    def reset(self) -> None:
        p = self.params
        self._ref_close = NAN
        self._prev_ref = NAN
        self._prev_close = NAN
        self._ref_returns: deque[float] = deque(maxlen=max(p.lags) + 1)
        self._pair = RollingPair(p.window)

    def on_reference_bar(self, bar: BarEvent) -> None:
        self._ref_close = bar.close

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        p = self.params
        ref, prev_ref, prev = self._ref_close, self._prev_ref, self._prev_close
        self._prev_ref, self._prev_close = ref, bar.close
        if ref == ref and prev_ref == prev_ref and prev == prev:
            x = math.log(bar.close / prev)
            y = math.log(ref / prev_ref)
            self._ref_returns.append(y)
            self._pair.push(x, y)
        rets = self._ref_returns
        n = len(rets)
        lags = tuple(rets[-1 - k] if n > k else NAN for k in p.lags)
        if self._pair.full:
            corr, ratio = self._pair.correlation(), self._pair.std_ratio()
        else:
            corr = ratio = NAN
        return (corr, *lags, ratio)


class FundingParams(FeatureParams):
    settle_interval_bars: int = Field(
        480, ge=1, le=100_000, description="bars between settlements (8 h of 1-minute bars); the warm-up"
    )


class FundingFeatures(FeaturePlugin):
    """The latest known funding rate (as-of join)."""

    name = "funding"
    version = "1"
    inputs = frozenset({FeatureInput.BARS, FeatureInput.FUNDING})
    Params = FundingParams

    def output_names(self) -> tuple[str, ...]:
        return ("xa_funding_rate",)

    def warmup_bars(self) -> int:
        return self.params.settle_interval_bars

    def docs(self) -> dict[str, FeatureDoc]:
        return {
            "xa_funding_rate": FeatureDoc(
                "rate of the latest funding settlement with time <= the bar's close (NaN before the first)",
                "rate per settlement",
            )
        }

    def reset(self) -> None:
        self._rate = NAN

    def on_funding(self, ts: int, rate: float) -> None:
        self._rate = rate

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        return (self._rate,)


@hookimpl
def lbml_register_features() -> list[type]:
    return [CrossAssetFeatures, FundingFeatures]
