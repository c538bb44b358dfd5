"""Cross-asset layer (5 features): reference-instrument correlation, lagged reference returns,
volatility ratio, and the latest known funding rate.

Reference bars (BTC for BNB) arrive through ``on_reference_bar``; a traded bar at t uses reference
bars that closed strictly before t (as-of join), so missing reference bars never shift the alignment
and the order in which two bars closing at the same instant are delivered cannot matter. Funding
is an as-of join as well: the latest rate settled before t, never the next one. The two groups are separate plugins because they need different inputs (klines data often
has a reference instrument but no funding history).
"""

import math
from collections import deque

from pydantic import Field, field_validator

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureInput, FeatureParams, FeaturePlugin
from lbml.features.rolling import RollingPair
from lbml.hookspecs import hookimpl


class CrossAssetParams(FeatureParams):
    window: int = Field(60, ge=3, le=100_000, description="bars for correlation and volatility ratio")
    lags: tuple[int, ...] = Field((1, 2), min_length=1)

    @field_validator("lags")
    @classmethod
    def _lags(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 or k > 10_000 for k in v) or len(set(v)) != len(v):
            raise ValueError("lags must be distinct integers in [1, 10000]")
        return v


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
        return max(p.window + 2, max(p.lags) + 2)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        asof = "reference bars closed strictly before t"
        d = {
            f"xa_ref_corr_{p.window}": FeatureDoc(
                f"Pearson correlation of 1-bar log returns, traded vs reference, over the {p.window} bars "
                f"ending at t−1 ({asof})",
                "correlation in [-1, 1]",
            )
        }
        d |= {
            f"xa_ref_ret_lag{k}": FeatureDoc(f"reference 1-bar log return of bar t−{k} ({asof})", "log return")
            for k in p.lags
        }
        d[f"xa_vol_ratio_{p.window}"] = FeatureDoc(
            f"std(traded log returns) / std(reference log returns) over the {p.window} bars ending at t−1",
            "ratio",
        )
        return d

    def reset(self) -> None:
        p = self.params
        self._refs: deque[tuple[int, float]] = deque(maxlen=4)  # (close time, close) of recent reference bars
        self._prev_ref = NAN
        self._prev_close = NAN
        self._prev_return = NAN
        self._ref_returns: deque[float] = deque(maxlen=max(p.lags))
        self._pair = RollingPair(p.window)

    def on_reference_bar(self, bar: BarEvent) -> None:
        self._refs.append((bar.ts, bar.close))

    def _ref_close_before(self, ts: int) -> float:
        refs = self._refs
        if refs:
            t, close = refs[-1]
            if t < ts:  # the usual case: the newest reference bar closed before t
                return close
            for t, close in reversed(refs):
                if t < ts:
                    return close
        return NAN

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        # Only reference bars closed strictly before t are used: a reference bar closing at t may
        # reach a live node before or after the traded bar, so using it would make the features
        # depend on delivery order.
        close = bar.close
        ref = self._ref_close_before(bar.ts)
        prev_ref, prev_close, x = self._prev_ref, self._prev_close, self._prev_return
        self._prev_ref, self._prev_close = ref, close
        self._prev_return = math.log(close / prev_close) if prev_close == prev_close else NAN
        rets = self._ref_returns
        if ref == ref and prev_ref == prev_ref and x == x:
            y = math.log(ref / prev_ref)  # the reference return of bar t-1, aligned with x
            rets.append(y)
            self._pair.push(x, y)
        n = len(rets)
        lags = [rets[-k] if n >= k else NAN for k in self.params.lags]
        pair = self._pair
        corr, ratio = pair.correlation_and_ratio() if pair.full else (NAN, NAN)
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
        return self.params.settle_interval_bars + 1

    def docs(self) -> dict[str, FeatureDoc]:
        return {
            "xa_funding_rate": FeatureDoc(
                "rate of the latest funding settlement strictly before the bar's close (NaN before the first)",
                "rate per settlement",
            )
        }

    def reset(self) -> None:
        self._rates: deque[tuple[int, float]] = deque(maxlen=4)  # (settlement time, rate)

    def on_funding(self, ts: int, rate: float) -> None:
        self._rates.append((ts, rate))

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        # Settlements strictly before the close: delivery order at equal timestamps cannot matter.
        ts = bar.ts
        for settled, rate in reversed(self._rates):
            if settled < ts:
                return (rate,)
        return (NAN,)


@hookimpl
def lbml_register_features() -> list[type]:
    return [CrossAssetFeatures, FundingFeatures]
