"""The nautilus Actor that forwards every ``Prediction`` on the message bus to a ``SignalPublisher``.

It derives the trading fields (direction, Kelly fraction, target leverage, bracket prices) with the
same sizing rule as the strategy (``lbml.sizing``), so the Rust bot receives what lbml would do.
The publisher is passed in and owned by the caller (backtest workflow or paper node), which closes
it after the run.
"""

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig, NonNegativeFloat, PositiveFloat, PositiveInt

from lbml.engine.messages import PREDICTION_TYPE, Prediction
from lbml.signals.publisher import SignalPublisher
from lbml.signals.schema import Signal
from lbml.sizing import KellyParams, kelly_fraction, target_exposure


class SignalPublisherActorConfig(ActorConfig, frozen=True):
    """Sizing parameters (as in ``KellyLeverageConfig``) and the bar length for the horizon."""

    bar_seconds: PositiveInt = 60
    kelly_fraction: PositiveFloat = 0.25
    max_leverage: PositiveFloat = 3.0
    max_position_fraction: PositiveFloat = 0.5
    min_notional: NonNegativeFloat = 10.0
    stop_loss_pct: PositiveFloat = 0.01
    take_profit_pct: PositiveFloat = 0.015
    round_trip_cost_pct: NonNegativeFloat = 0.001
    probability_shrinkage: NonNegativeFloat = 1.0
    ev_margin: NonNegativeFloat = 0.0


def signal_from_prediction(prediction: Prediction, params: KellyParams, bar_seconds: int) -> Signal:
    """Turn a model prediction into the market fields of a published signal."""
    p_up = prediction.probability
    exposure = target_exposure(p_up, params)
    p = 0.5 + params.probability_shrinkage * (p_up - 0.5)
    win = params.take_profit_pct - params.round_trip_cost_pct
    loss = params.stop_loss_pct + params.round_trip_cost_pct
    close = prediction.close
    if exposure > 0.0:
        direction, full_kelly = "long", kelly_fraction(p, win, loss)
        stop, take = close * (1.0 - params.stop_loss_pct), close * (1.0 + params.take_profit_pct)
    elif exposure < 0.0:
        direction, full_kelly = "short", kelly_fraction(1.0 - p, win, loss)
        stop, take = close * (1.0 + params.stop_loss_pct), close * (1.0 - params.take_profit_pct)
    else:
        direction, full_kelly, stop, take = "flat", 0.0, None, None
    return Signal(
        symbol=prediction.instrument_id.symbol.value,
        ts_event=prediction.ts_event,
        direction=direction,
        probability=p_up,
        confidence=abs(2.0 * p_up - 1.0),
        kelly_fraction=full_kelly,
        target_leverage=abs(exposure),
        stop_loss=stop,
        take_profit=take,
        horizon=prediction.horizon_bars * bar_seconds,
    )


class SignalPublisherActor(Actor):
    """Publish each ``Prediction`` from the message bus as a ``signal.<SYMBOL>`` message."""

    def __init__(self, config: SignalPublisherActorConfig, publisher: SignalPublisher) -> None:
        super().__init__(config)
        self._publisher = publisher
        self._params = KellyParams(
            kelly_fraction=config.kelly_fraction,
            max_leverage=config.max_leverage,
            max_position_fraction=config.max_position_fraction,
            min_notional=config.min_notional,
            stop_loss_pct=config.stop_loss_pct,
            take_profit_pct=config.take_profit_pct,
            round_trip_cost_pct=config.round_trip_cost_pct,
            probability_shrinkage=config.probability_shrinkage,
            ev_margin=config.ev_margin,
        )

    def on_start(self) -> None:
        self.subscribe_data(PREDICTION_TYPE)

    def on_data(self, data) -> None:
        if isinstance(data, Prediction):
            self._publisher.publish(signal_from_prediction(data, self._params, self.config.bar_seconds))


_SIZING_FIELDS = (
    "kelly_fraction", "max_leverage", "max_position_fraction", "min_notional", "stop_loss_pct",
    "take_profit_pct", "round_trip_cost_pct", "probability_shrinkage", "ev_margin",
)


def publisher_actor_config(strategy_kwargs: dict) -> SignalPublisherActorConfig:
    """The actor's config with the sizing of the strategy's config kwargs (``KellyLeverageConfig``)."""
    return SignalPublisherActorConfig(
        component_id="SignalPublisher",
        bar_seconds=int(strategy_kwargs["bar_minutes"]) * 60,
        **{k: strategy_kwargs[k] for k in _SIZING_FIELDS},
    )


def publisher_actor(publisher: SignalPublisher, strategy_kwargs: dict) -> SignalPublisherActor:
    """Build the actor with the sizing of the strategy's config kwargs (``KellyLeverageConfig``)."""
    return SignalPublisherActor(publisher_actor_config(strategy_kwargs), publisher)


def run_with_publisher(settings, model_id: str, feature_schema_hash: str, run):
    """Open a publisher from ``[signals]`` settings, call ``run(publisher)``, close it, attach counters.

    ``run`` returns a ``BacktestResult``; its ``signals`` field receives the publisher's counters.
    """
    from lbml.signals.config import publisher_config

    config = publisher_config(settings, model_id=model_id, feature_schema_hash=feature_schema_hash)
    with SignalPublisher(config) as publisher:
        result = run(publisher)
    stats = publisher.stats()
    result.signals = {
        "endpoint": config.endpoint,
        "published": stats.published,
        "dropped": stats.dropped,
        "heartbeats": stats.heartbeats,
        "last_seq": stats.last_seq,
    }
    return result
