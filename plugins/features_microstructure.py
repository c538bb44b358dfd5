"""Microstructure layer: order flow from bars (3), top of book from quotes (3), depth (2).

- ``order_flow`` needs bars only. Signed volume uses the real aggressor split when the bar carries
  taker-buy volume (trade ticks with aggressor side, Binance klines) and bulk volume
  classification otherwise: V_buy = V·Φ(r / σ_r) with σ_r the std of the previous bars' returns.
- ``quotes`` needs top-of-book quotes: relative spread, level-1 queue imbalance and the order-flow
  imbalance of Cont, Kukanov & Stoikov (2014).
- ``depth`` needs a 5-level book summary: bid and ask size on the best five levels.

Data without quotes or depth leaves those plugins out (declared unavailable); nothing is
approximated from OHLCV. All outputs are ratios, hence scale-free.
"""

import math
from collections import deque

from pydantic import Field

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureInput, FeatureParams, FeaturePlugin
from lbml.features.rolling import RollingMoments, RollingSum
from lbml.hookspecs import hookimpl

_SQRT2 = math.sqrt(2.0)


class OrderFlowParams(FeatureParams):
    flow_window: int = Field(15, ge=1, le=100_000, description="bars summed for the trade-flow imbalance")
    bvc_window: int = Field(60, ge=2, le=100_000, description="bars for σ_r in bulk volume classification")
    vpin_buckets: int = Field(50, ge=2, le=10_000)
    vpin_bucket_bars: float = Field(
        5.0, gt=0, le=10_000, description="bucket volume in units of the mean bar volume"
    )
    sizing_window: int = Field(60, ge=1, le=100_000, description="bars for the mean bar volume")
    illiquidity_window: int = Field(60, ge=2, le=100_000)


class OrderFlowFeatures(FeaturePlugin):
    """Trade-flow imbalance, VPIN and Amihud illiquidity."""

    name = "order_flow"
    version = "1"
    Params = OrderFlowParams

    def output_names(self) -> tuple[str, ...]:
        p = self.params
        return (f"mi_flow_imbalance_{p.flow_window}", "mi_vpin", f"mi_amihud_{p.illiquidity_window}")

    def warmup_bars(self) -> int:
        p = self.params
        vpin = p.sizing_window + math.ceil(2 * p.vpin_buckets * p.vpin_bucket_bars)
        return max(p.flow_window, p.bvc_window + 1, vpin, p.illiquidity_window + 1)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        signed = (
            "buy volume = taker-buy volume when the data has the aggressor side, else "
            f"V·Φ(r/σ_r) (bulk volume classification, σ_r over the previous {p.bvc_window} bars)"
        )
        return {
            f"mi_flow_imbalance_{p.flow_window}": FeatureDoc(
                f"Σ(buy − sell) / Σ volume over the last {p.flow_window} bars; {signed}", "ratio in [-1, 1]"
            ),
            "mi_vpin": FeatureDoc(
                f"Σ|sell − buy| / Σ bucket volume over the last {p.vpin_buckets} volume buckets; bucket "
                f"volume = {p.vpin_bucket_bars:g} × mean bar volume (last {p.sizing_window} bars) when the "
                "bucket opens; a warm-up that depends on traded volume",
                "ratio in [0, 1]",
            ),
            f"mi_amihud_{p.illiquidity_window}": FeatureDoc(
                f"mean(|r| / V) × mean(V) over the last {p.illiquidity_window} bars with V > 0 (Amihud, "
                "volume in units of its mean)",
                "log return per mean bar volume",
            ),
        }

    def reset(self) -> None:
        p = self.params
        self._prev_close = NAN
        self._returns = RollingMoments(p.bvc_window)
        self._flow = RollingSum(p.flow_window)
        self._flow_volume = RollingSum(p.flow_window)
        self._sizing = RollingSum(p.sizing_window)
        self._bucket_size = 0.0
        self._bucket_filled = 0.0
        self._bucket_buy = 0.0
        self._bucket_imbalance: deque[float] = deque(maxlen=p.vpin_buckets)
        self._bucket_sizes: deque[float] = deque(maxlen=p.vpin_buckets)
        self._vpin = NAN  # VPIN of the current buckets, recomputed only after a bucket closes
        self._vpin_stale = False
        self._ratio = RollingSum(p.illiquidity_window)
        self._ratio_volume = RollingSum(p.illiquidity_window)
        self._amihud = NAN  # changes only on bars that push a ratio

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        volume = bar.volume
        close = bar.close
        prev = self._prev_close
        self._prev_close = close
        r = math.log(close / prev) if prev == prev else NAN

        # Signed volume: the real aggressor split when present, bulk volume classification otherwise.
        taker = bar.taker_buy_volume
        returns = self._returns
        if taker == taker:
            buy = min(max(taker, 0.0), volume)
        elif r == r and returns.full:
            sigma = returns.std()
            z = r / sigma if sigma > 0 else 0.0
            buy = volume * 0.5 * (1.0 + math.erf(z / _SQRT2))
        else:
            buy = NAN
        if r == r:
            returns.push(r)

        if buy == buy:
            self._flow.push(2.0 * buy - volume)
            self._flow_volume.push(volume)
            self._fill_buckets(buy, volume)
        self._sizing.push(volume)
        if r == r and volume > 0:
            ratio_mean = self._ratio.push_mean(abs(r) / volume)
            self._amihud = ratio_mean * self._ratio_volume.push_mean(volume)

        fv = self._flow_volume
        if fv.full:
            total = fv.total
            flow = self._flow.total / total if total > 0 else 0.0
        else:
            flow = NAN
        if self._vpin_stale:
            self._vpin_stale = False
            if len(self._bucket_sizes) == self.params.vpin_buckets:
                self._vpin = math.fsum(self._bucket_imbalance) / math.fsum(self._bucket_sizes)
        return (flow, self._vpin, self._amihud)

    def _fill_buckets(self, buy: float, volume: float) -> None:
        if volume <= 0:
            return
        p = self.params
        buy_share = buy / volume
        remaining = volume
        if self._bucket_size <= 0:
            mean = self._sizing.mean()
            if not mean > 0:
                return
            self._bucket_size = p.vpin_bucket_bars * mean
        capacity = self._bucket_size - self._bucket_filled
        take = min(remaining, capacity)
        self._bucket_filled += take
        self._bucket_buy += take * buy_share
        remaining -= take
        if take < capacity:  # decided on the capacity, not on a rounded running sum
            return
        self._close_bucket()
        mean = self._sizing.mean()
        size = p.vpin_bucket_bars * mean if mean > 0 else 0.0
        if size <= 0:
            self._bucket_size = 0.0
            return
        # Every bucket filled entirely by this bar has the bar's buy share.
        full = min(int(remaining // size), p.vpin_buckets)
        imbalance = abs(2.0 * buy_share - 1.0) * size
        for _ in range(full):
            self._push_bucket(imbalance, size)
        remaining -= int(remaining // size) * size
        self._bucket_size = size
        self._bucket_filled = remaining
        self._bucket_buy = remaining * buy_share

    def _push_bucket(self, imbalance: float, size: float) -> None:
        self._bucket_imbalance.append(imbalance)
        self._bucket_sizes.append(size)
        self._vpin_stale = True

    def _close_bucket(self) -> None:
        size = self._bucket_size
        self._push_bucket(abs(2.0 * self._bucket_buy - size), size)
        self._bucket_size = 0.0
        self._bucket_filled = 0.0
        self._bucket_buy = 0.0


class QuoteParams(FeatureParams):
    pass


class QuoteFeatures(FeaturePlugin):
    """Relative spread, level-1 imbalance and order-flow imbalance from top-of-book quotes."""

    name = "quotes"
    version = "1"
    inputs = frozenset({FeatureInput.BARS, FeatureInput.QUOTES})
    Params = QuoteParams

    def output_names(self) -> tuple[str, ...]:
        return ("mi_spread_bps", "mi_l1_imbalance", "mi_ofi")

    def warmup_bars(self) -> int:
        return 1

    def docs(self) -> dict[str, FeatureDoc]:
        return {
            "mi_spread_bps": FeatureDoc(
                "mean over the bar's quotes of 10⁴·(ask − bid)/mid (the last quote's when the bar has none)",
                "basis points",
            ),
            "mi_l1_imbalance": FeatureDoc(
                "(bid_size − ask_size) / (bid_size + ask_size) of the last quote at or before the close",
                "ratio in [-1, 1]",
            ),
            "mi_ofi": FeatureDoc(
                "Σ e(n) over the bar's quotes / mean level-1 size, e(n) = 1{b(n)≥b(n−1)}·q_b(n) − "
                "1{b(n)≤b(n−1)}·q_b(n−1) − 1{a(n)≤a(n−1)}·q_a(n) + 1{a(n)≥a(n−1)}·q_a(n−1) "
                "(Cont, Kukanov & Stoikov 2014)",
                "multiples of the mean level-1 size",
            ),
        }

    def reset(self) -> None:
        self._bid = self._ask = self._bid_size = self._ask_size = NAN
        self._spread_sum = 0.0
        self._depth_sum = 0.0
        self._ofi = 0.0
        self._n = 0

    def on_quote(self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        pb = self._bid
        if pb == pb:
            pa = self._ask
            e = 0.0
            if bid >= pb:
                e += bid_size
            if bid <= pb:
                e -= self._bid_size
            if ask <= pa:
                e -= ask_size
            if ask >= pa:
                e += self._ask_size
            self._ofi += e
        self._bid = bid
        self._ask = ask
        self._bid_size = bid_size
        self._ask_size = ask_size
        self._spread_sum += (ask - bid) / (0.5 * (bid + ask))
        self._depth_sum += 0.5 * (bid_size + ask_size)
        self._n += 1

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        bid, ask = self._bid, self._ask
        if bid != bid:
            return (NAN, NAN, NAN)
        n = self._n
        if n:
            spread = 1e4 * self._spread_sum / n
            mean_depth = self._depth_sum / n
            ofi = self._ofi / mean_depth if mean_depth > 0 else 0.0
        else:
            spread = 1e4 * (ask - bid) / (0.5 * (bid + ask))
            ofi = 0.0
        total = self._bid_size + self._ask_size
        imbalance = (self._bid_size - self._ask_size) / total if total > 0 else 0.0
        self._spread_sum = self._depth_sum = self._ofi = 0.0
        self._n = 0
        return (spread, imbalance, ofi)


class DepthParams(FeatureParams):
    volume_window: int = Field(60, ge=1, le=100_000, description="bars for the mean bar volume")


class DepthFeatures(FeaturePlugin):
    """Bid and ask depth on the best five levels, in units of the mean bar volume."""

    name = "depth"
    version = "1"
    inputs = frozenset({FeatureInput.BARS, FeatureInput.DEPTH})
    Params = DepthParams

    def output_names(self) -> tuple[str, ...]:
        return ("mi_bid_depth_5", "mi_ask_depth_5")

    def warmup_bars(self) -> int:
        return self.params.volume_window

    def docs(self) -> dict[str, FeatureDoc]:
        w = self.params.volume_window
        return {
            f"mi_{side}_depth_5": FeatureDoc(
                f"size on the best 5 {side} levels (latest snapshot strictly before the close) / mean bar "
                f"volume over the last {w} bars",
                "bars of mean volume",
            )
            for side in ("bid", "ask")
        }

    def reset(self) -> None:
        self._snapshots: deque[tuple[int, float, float]] = deque(maxlen=4)
        self._volume = RollingSum(self.params.volume_window)

    def on_depth(self, ts: int, bid_depth: float, ask_depth: float) -> None:
        self._snapshots.append((ts, bid_depth, ask_depth))

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        mean = self._volume.push_mean(bar.volume)  # NaN until the window is full
        if not mean > 0:
            return (NAN, NAN)
        # Snapshots strictly before the close: delivery order at equal timestamps cannot matter.
        close_ts = bar.ts
        for ts, bid_depth, ask_depth in reversed(self._snapshots):
            if ts < close_ts:
                return (bid_depth / mean, ask_depth / mean)
        return (NAN, NAN)


@hookimpl
def lbml_register_features() -> list[type]:
    return [OrderFlowFeatures, QuoteFeatures, DepthFeatures]
