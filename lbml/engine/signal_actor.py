"""The actor that turns closed bars into predictions: features → model → ``Prediction``.

The same actor runs in the backtest engine and in the live node; only the data feeding it differs.
The feature pipeline and the model are passed in explicitly (no globals); the pipeline must already
be warmed up with the history before the first bar this actor sees.
"""

import logging
import math
import time
from collections.abc import Callable

import numpy as np

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import Bar, BarType, QuoteTick, TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.identifiers import InstrumentId

from lbml.engine.messages import PREDICTION_TYPE, Prediction
from lbml.features.base import FeatureInput
from lbml.features.base import BarEvent
from lbml.features.pipeline import FeaturePipeline
from lbml.models.base import ModelPlugin

log = logging.getLogger(__name__)


class SignalActorConfig(ActorConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    reference_bar_type: BarType | None = None
    horizon_bars: int = 1


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
        self._wants_trades = bool(pipeline.inputs & {FeatureInput.TRADES, FeatureInput.TAKER_BUY})
        self._wants_quotes = FeatureInput.QUOTES in pipeline.inputs
        self._taker_buy = 0.0
        self.n_predictions = 0
        self.latencies_ns: list[int] = []

    def on_start(self) -> None:
        # Reference bars first: at equal close times they are then delivered before the traded bar.
        if self._reference_bar_type is not None and FeatureInput.REFERENCE in self._pipeline.inputs:
            self.subscribe_bars(self._reference_bar_type)
        if self._wants_quotes:
            self.subscribe_quote_ticks(self.config.instrument_id)
        if self._wants_trades:
            self.subscribe_trade_ticks(self.config.instrument_id)
        self.subscribe_bars(self._bar_type)

    def on_trade_tick(self, tick: TradeTick) -> None:
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
        taker_buy = self._taker_buy if self._wants_trades else math.nan
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
        self.publish_data(PREDICTION_TYPE, prediction)
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
