"""Paper trading always publishes its predictions over ZeroMQ (``lbml.signals``).

Each signal's ``seq`` is the prediction's number in the session, the ``seq`` of the state database's
``signals`` table, so the wire and the state agree across restarts. While a restarted session replays
what it had already committed, the predictions it regenerates were published by the previous run and
are not sent again; a prediction published but not committed when the process died is regenerated
identically and published again *with the same seq* (at-least-once on the wire, exactly-once for a
subscriber that drops a seq it has already processed). The sequence file in the state folder keeps
the highest seq sent (heartbeats report it as ``last_seq``). The heartbeat reports the
session's own health: ``degraded`` while the model guard withholds predictions, ``stale`` while the
feed is stalled.
"""

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from lbml.live.status import status_pricing
from lbml.engine.backtest import strategy_config_kwargs
from lbml.engine.messages import Prediction
from lbml.live.status import PaperStatus
from lbml.scenario import Scenario
from lbml.settings import SignalsSettings
from lbml.signals.actor import SignalPublisherActor, publisher_actor_config
from lbml.signals.config import publisher_config
from lbml.signals.publisher import SignalPublisher

SEQ_FILE = "signals.seq"


class PaperSignalPublisherActor(SignalPublisherActor):
    """Publishes predictions that are new to the session; owns and closes its publisher."""

    def __init__(self, config, publisher: SignalPublisher, status: PaperStatus,
                 pricing_for: Callable[[PaperStatus], dict] | None = None) -> None:
        super().__init__(config, publisher)
        self._status = status
        self._seen = 0
        self._owned = publisher
        self._model_id = status.model_id
        self._pricing_for = pricing_for  # the sizing arguments of the status' model ([paper.retrain] swaps it)

    def on_data(self, data) -> None:
        if not isinstance(data, Prediction):
            return
        self._seen += 1
        if self._status.replaying and self._seen <= self._status.last_durable_signal_seq:
            return  # published by the run before the restart
        if self._status.model_id != self._model_id and self._pricing_for is not None:  # a retrained model went in
            self._model_id = self._status.model_id
            self._owned.name_model(self._model_id)
            self.reprice(**self._pricing_for(self._status))
        # The wire seq is the prediction's number in the session, the state database's signal seq:
        # a prediction published but not committed before a crash is regenerated (deterministically)
        # after the restart and goes out again with the same seq, never as a new one.
        self._publish(data, seq=self._seen)
        _record_stats(self._status, self._owned.stats())

    def on_dispose(self) -> None:
        self._owned.close()


def _record_stats(status: PaperStatus, stats) -> None:
    status.signals_published = stats.published
    status.signal_peers = stats.peers


def _model_pricing(scenario: Scenario, status: PaperStatus) -> dict:
    kwargs = strategy_config_kwargs(scenario, scenario.data.bar_minutes, status.ev_margin, status_pricing(status))
    return {key: kwargs[key] for key in ("ev_margin", "payoff", "costs", "sigma_1m")}


def session_health(status: PaperStatus) -> str | None:
    if status.feed_stalled:
        return "stale"
    if status.degraded:
        return "degraded"
    return None


def paper_publisher(
    signals: SignalsSettings, state_dir: Path, scenario: Scenario
) -> Callable[[PaperStatus], PaperSignalPublisherActor]:
    """Return the ``extra_actors`` factory that adds the publisher to a paper node."""
    publisher_config(signals, model_id="-", feature_schema_hash="-")  # refuse bad settings up front

    def make(status: PaperStatus) -> PaperSignalPublisherActor:
        config = publisher_config(
            signals, model_id=status.model_id, feature_schema_hash=status.feature_schema_hash
        )
        config = replace(config, seq_store=Path(state_dir) / SEQ_FILE)
        publisher = SignalPublisher(config, health=lambda: session_health(status),
                                    on_heartbeat=partial(_record_stats, status))
        kwargs = strategy_config_kwargs(scenario, scenario.data.bar_minutes, status.ev_margin, status_pricing(status))
        return PaperSignalPublisherActor(publisher_actor_config(kwargs), publisher, status,
                                         pricing_for=partial(_model_pricing, scenario))

    return make
