"""The actor that turns closed bars into predictions: features → model → ``Prediction``.

The same actor runs in the backtest engine and in the live node; only the data feeding it differs.
The feature pipeline and the model are passed in explicitly (no globals); the pipeline must already
be warmed up with the history before the first bar this actor sees.
"""

import logging
import math
import time
from array import array
from collections.abc import Callable

import numpy as np

from lbml.engine.custom_data import (
    BAR_FLOW_CLIENT_ID,
    BAR_FLOW_TYPE,
    DEPTH_CLIENT_ID,
    DEPTH_TYPE,
    FUNDING_CLIENT_ID,
    FUNDING_TYPE,
    BarFlow,
    DepthSummary,
    FundingRate,
)
from lbml.engine.messages import PREDICTION_TYPE, Prediction
from lbml.features.base import FeatureInput
from lbml.features.base import BarEvent
from lbml.features.pipeline import FeaturePipeline
from lbml.models.base import ModelPlugin
from lbml.nautilus.custom_data import publish_custom, subscribe_custom
from lbml.nautilus.model import AggressorSide, Bar, BarType, InstrumentId, QuoteTick, TradeTick
from lbml.nautilus.trading import Actor, ActorConfig

log = logging.getLogger(__name__)


class SignalActorConfig(ActorConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    reference_bar_type: BarType | None = None
    horizon_bars: int = 1
    funding: bool = False  # the engine delivers ``FundingRate`` messages
    bar_flow: bool = False  # the engine delivers ``BarFlow`` messages (bar data with taker-buy volume)
    depth: bool = False  # the engine delivers ``DepthSummary`` messages


class SignalActor(Actor):
    """Feeds the feature pipeline, asks the model, publishes one ``Prediction`` per bar."""

    def __init__(
        self,
        config: SignalActorConfig,
        pipeline: FeaturePipeline,
        model: ModelPlugin,
        on_prediction: Callable[[Prediction, np.ndarray], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._pipeline = pipeline
        self._model = model
        self._on_prediction = on_prediction
        self._bar_type = config.bar_type
        self._reference_bar_type = config.reference_bar_type
        # Trade ticks are always subscribed: with tick data they give every bar its taker-buy volume
        # (as the batch path's bars have); with bar data none arrive and ``BarFlow`` carries it.
        self._saw_trades = False
        self._wants_quotes = FeatureInput.QUOTES in pipeline.inputs
        self._wants_funding = config.funding and FeatureInput.FUNDING in pipeline.inputs
        self._bar_flow: tuple[int, float] = (-1, math.nan)  # (bar close, taker-buy volume) of bar data
        self._taker_buy = 0.0
        self.n_predictions = 0
        self.latencies_ns = array("q")  # per bar, ns (8 bytes each)

    def replace_pipeline(self, pipeline: FeaturePipeline) -> None:
        """Compute the next bars with ``pipeline`` (same inputs; already fed everything up to the last bar)."""
        if pipeline.inputs != self._pipeline.inputs:
            raise ValueError("a replacement pipeline must read the same inputs")
        self._pipeline = pipeline

    def on_start(self) -> None:
        # Bars closing at the same instant may arrive in either order; cross-asset features only use
        # reference bars that closed strictly before the traded bar, so the order cannot matter.
        if self._reference_bar_type is not None and FeatureInput.REFERENCE in self._pipeline.inputs:
            self.subscribe_bars(self._reference_bar_type)
        if self._wants_quotes:
            self.subscribe_quote_ticks(self.config.instrument_id)
        self.subscribe_trade_ticks(self.config.instrument_id)
        if self._wants_funding:
            subscribe_custom(self, FUNDING_TYPE, FUNDING_CLIENT_ID)
        if self.config.depth and FeatureInput.DEPTH in self._pipeline.inputs:
            subscribe_custom(self, DEPTH_TYPE, DEPTH_CLIENT_ID)
        if self.config.bar_flow:
            subscribe_custom(self, BAR_FLOW_TYPE, BAR_FLOW_CLIENT_ID)
        self.subscribe_bars(self._bar_type)

    def on_data(self, data) -> None:
        if isinstance(data, FundingRate):
            self._pipeline.on_funding(data.ts_event, data.rate)
        elif isinstance(data, DepthSummary):
            self._pipeline.on_depth(data.ts_event, data.bid_depth, data.ask_depth)
        elif isinstance(data, BarFlow):
            self._bar_flow = (data.ts_event, data.taker_buy_volume)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self._saw_trades = True
        size = tick.size.as_double()
        buyer = tick.aggressor_side == AggressorSide.BUYER
        if buyer:
            self._taker_buy += size
        self._pipeline.on_trade(tick.ts_event, tick.price.as_double(), size, 1 if buyer else -1)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self._pipeline.on_quote(
            tick.ts_event,
            tick.bid_price.as_double(),
            tick.ask_price.as_double(),
            tick.bid_size.as_double(),
            tick.ask_size.as_double(),
        )

    def on_bar(self, bar: Bar) -> None:
        if bar.bar_type != self._bar_type:
            self._pipeline.on_reference_bar(_bar_event(bar, math.nan))
            return
        started = time.perf_counter_ns()
        if self._saw_trades:
            taker_buy = self._taker_buy
        else:  # bar data: the bar's own taker-buy volume when the data has it
            flow_ts, flow = self._bar_flow
            taker_buy = flow if flow_ts == bar.ts_event else math.nan
        self._taker_buy = 0.0
        features = self._pipeline.update(_bar_event(bar, taker_buy))
        if not np.isfinite(features).all():
            return  # still warming up
        probability = self._model.predict_up_one(features)
        if not math.isfinite(probability):
            return  # no prediction this bar (e.g. a guarded model withholding it): nothing to act on
        prediction = Prediction(
            ts_event=bar.ts_event,
            ts_init=bar.ts_init,
            instrument_id=self.config.instrument_id,
            probability=probability,
            close=bar.close.as_double(),
            horizon_bars=self.config.horizon_bars,
        )
        self.n_predictions += 1
        if self._on_prediction is not None:
            self._on_prediction(prediction, features)
        publish_custom(self, PREDICTION_TYPE, prediction)
        self.latencies_ns.append(time.perf_counter_ns() - started)


def _bar_event(bar: Bar, taker_buy: float) -> BarEvent:
    return BarEvent(
        bar.ts_event,
        bar.open.as_double(),
        bar.high.as_double(),
        bar.low.as_double(),
        bar.close.as_double(),
        bar.volume.as_double(),
        taker_buy,
    )
