"""The nautilus Actor that forwards every ``Prediction`` on the message bus to a ``SignalPublisher``.

It derives the trading fields (direction, Kelly fraction, target leverage, bracket prices) with the
same sizing rule as the strategy (``lbml.sizing``), so the Rust bot receives what lbml would do.
The publisher is passed in and owned by the caller (backtest workflow or paper node), which closes
it after the run.
"""

from lbml.engine.messages import PREDICTION_TYPE, Prediction
from lbml.nautilus.custom_data import subscribe_custom
from lbml.nautilus.trading import Actor, ActorConfig, NonNegativeFloat, PositiveFloat, PositiveInt
from lbml.signals.publisher import SignalPublisher
from lbml.signals.schema import Signal
from lbml.cost_model import CostModel
from lbml.pricing import kelly_params
from lbml.sizing import KellyParams, Payoff, decide


class SignalPublisherActorConfig(ActorConfig, frozen=True):
    """Sizing parameters (as in ``KellyLeverageConfig``) and the bar length for the horizon."""

    bar_seconds: PositiveInt = 60
    kelly_fraction: PositiveFloat = 0.25
    max_leverage: PositiveFloat = 3.0
    max_position_fraction: PositiveFloat = 0.5
    min_notional: NonNegativeFloat = 10.0
    stop_loss_pct: PositiveFloat = 0.01
    take_profit_pct: PositiveFloat = 0.015
    max_holding_bars: PositiveInt = 240
    payoff: Payoff | None = None
    costs: CostModel = CostModel()
    sigma_1m: NonNegativeFloat = 0.0
    probability_shrinkage: NonNegativeFloat = 1.0
    ev_margin: NonNegativeFloat = 0.0


def signal_from_prediction(
    prediction: Prediction, params: KellyParams, bar_seconds: int, sigma_1m: float = 0.0,
    bracket: tuple[float, float] = (0.01, 0.015),
) -> Signal:
    """Turn a model prediction into the market fields of a published signal (the strategy's rule).

    ``bracket`` is ``(stop_loss_pct, take_profit_pct)``.
    """
    p_up = prediction.probability
    decision = decide(p_up, params, sigma_1m=sigma_1m)
    close = prediction.close
    stop_pct, take_pct = bracket
    if decision.side > 0:
        direction = "long"
        stop, take = close * (1.0 - stop_pct), close * (1.0 + take_pct)
    elif decision.side < 0:
        direction = "short"
        stop, take = close * (1.0 + stop_pct), close * (1.0 - take_pct)
    else:
        direction, stop, take = "flat", None, None
    return Signal(
        symbol=prediction.instrument_id.symbol.value,
        ts_event=prediction.ts_event,
        direction=direction,
        probability=p_up,
        confidence=abs(2.0 * p_up - 1.0),
        kelly_fraction=decision.full_kelly if decision.side != 0 else 0.0,
        target_leverage=abs(decision.exposure),
        stop_loss=stop,
        take_profit=take,
        horizon=prediction.horizon_bars * bar_seconds,
    )


class SignalPublisherActor(Actor):
    """Publish each ``Prediction`` from the message bus as a ``signal.<SYMBOL>`` message."""

    def __init__(self, config: SignalPublisherActorConfig, publisher: SignalPublisher) -> None:
        super().__init__(config)
        self._publisher = publisher
        self.reprice(config.ev_margin, config.payoff, config.costs, config.sigma_1m)
        self._bracket = (config.stop_loss_pct, config.take_profit_pct)

    def reprice(self, ev_margin: float, payoff: Payoff | None, costs: CostModel, sigma_1m: float) -> None:
        """Size the next signals with a (retrained) model's EV margin and pricing."""
        config = self.config
        self._params = kelly_params(
            kelly_fraction=config.kelly_fraction,
            max_leverage=config.max_leverage,
            max_position_fraction=config.max_position_fraction,
            min_notional=config.min_notional,
            payoff=payoff or Payoff.from_brackets(
                config.take_profit_pct, config.stop_loss_pct, config.max_holding_bars * config.bar_seconds / 60
            ),
            costs=costs,
            probability_shrinkage=config.probability_shrinkage,
            ev_margin=ev_margin,
        )
        self._sigma_1m = sigma_1m

    def on_start(self) -> None:
        subscribe_custom(self, PREDICTION_TYPE)

    def on_data(self, data) -> None:
        if isinstance(data, Prediction):
            self._publish(data)

    def _publish(self, prediction: Prediction, seq: int | None = None) -> None:
        signal = signal_from_prediction(prediction, self._params, self.config.bar_seconds, self._sigma_1m,
                                        self._bracket)
        self._publisher.publish(signal, seq=seq)


_SIZING_FIELDS = (
    "kelly_fraction", "max_leverage", "max_position_fraction", "min_notional", "stop_loss_pct",
    "take_profit_pct", "max_holding_bars", "payoff", "costs", "sigma_1m", "probability_shrinkage", "ev_margin",
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
