"""A real BacktestEngine run of a scenario's strategy on a window of real bars, driven by a scripted
prediction stream (``PredictionReplay``) instead of a model: order-mechanics tests need to put the
strategy in a given state at a given bar, which a trained model cannot be asked to do."""

from dataclasses import dataclass
from decimal import Decimal

import msgspec
import pandas as pd

from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import LatencyModel, MakerTakerFeeModel
from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig, BacktestEngineConfig, LoggingConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
from nautilus_trader.model.objects import Money

from lbml.engine.backtest import bar_type_for, instrument_for, load_strategy_class, strategy_config_kwargs
from lbml.engine.convert import to_bars
from lbml.engine.messages import PREDICTION_TYPE, Prediction
from lbml.engine.purge import CachePurger, CachePurgerConfig
from lbml.engine.recorder import RunRecorder, check_invariants, recorder_config
from lbml.engine.venue_modules import venue_modules
from lbml.split import Split


class PredictionReplayConfig(ActorConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    probabilities: tuple[tuple[int, float], ...] = ()  # (bar ts_event ns, P(up))


class PredictionReplay(Actor):
    """Publishes the scripted probability at each listed bar close, as ``SignalActor`` would."""

    def __init__(self, config: PredictionReplayConfig) -> None:
        super().__init__(config)
        self._at = dict(config.probabilities)

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        p = self._at.get(bar.ts_event)
        if p is not None:
            self.publish_data(PREDICTION_TYPE, Prediction(
                ts_event=bar.ts_event, ts_init=bar.ts_init, instrument_id=self.config.instrument_id,
                probability=p, close=bar.close.as_double(), horizon_bars=1,
            ))


@dataclass
class Replay:
    strategy: object
    recorder: RunRecorder
    bars: pd.DataFrame
    purger: CachePurger | None = None


def replay(scenario, market, start: str, end: str, probabilities: dict[str, float],
           exposure_caps: tuple[float, float] | None = None, purge: bool = False) -> Replay:
    """Run ``scenario``'s strategy and venue on the bars in ``(start, end]`` with ``probabilities``
    (bar time → P(up)) as its predictions; the recorder checks ``exposure_caps`` (default: the
    scenario's) and a breach raises ``InvariantError`` after the run, as in ``run_backtest``.
    ``purge`` adds ``run_backtest``'s cache purger (every bar)."""
    cfg = scenario.data
    data = market[cfg.symbol]
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    split = Split(data.bars.index[0], lo, lo, hi)
    instrument = instrument_for(data, cfg.venue, scenario, lo)
    engine = BacktestEngine(BacktestEngineConfig(trader_id=TraderId("LBML-001"),
                                                 logging=LoggingConfig(log_level="ERROR")))
    mods = venue_modules(scenario, market, split)
    engine.add_venue(
        venue=Venue(cfg.venue), oms_type=OmsType.NETTING, account_type=AccountType.MARGIN,
        base_currency=instrument.quote_currency,
        starting_balances=[Money(scenario.venue.starting_balance, instrument.quote_currency)],
        default_leverage=Decimal(str(scenario.strategy.max_leverage)), fee_model=MakerTakerFeeModel(),
        latency_model=LatencyModel(base_latency_nanos=int(scenario.costs.latency_ms * 1_000_000)),
        modules=mods.modules, bar_execution=True,
    )
    engine.add_instrument(instrument)
    bar_type = bar_type_for(instrument.id, market.bar_minutes, internal=False)
    script = tuple((pd.Timestamp(t, tz="UTC").value, p) for t, p in probabilities.items())
    engine.add_actor(PredictionReplay(PredictionReplayConfig(instrument_id=instrument.id, bar_type=bar_type,
                                                             probabilities=script)))
    config = recorder_config(scenario, instrument.id, bar_type, mods.leverage.spec)
    if exposure_caps is not None:
        config = msgspec.structs.replace(config, exposure_caps=exposure_caps)
    recorder = RunRecorder(config)
    engine.add_actor(recorder)
    cls, config_cls = load_strategy_class(scenario.strategy.class_path)
    strategy = cls(config_cls(instrument_id=instrument.id, bar_type=bar_type,
                              **strategy_config_kwargs(scenario, market.bar_minutes),
                              **mods.leverage.strategy_kwargs()))
    engine.add_strategy(strategy)
    purger = CachePurger(CachePurgerConfig(component_id="CachePurger", bar_type=bar_type, every_bars=1)) if purge else None
    if purger is not None:
        engine.add_actor(purger)
    bars = data.bars.loc[(data.bars.index > lo) & (data.bars.index <= hi)]
    engine.add_data(to_bars(bars, bar_type, instrument))
    engine.run()
    engine.end()
    recorder.record_end_of_data()
    engine.dispose()
    check_invariants(recorder.record)
    return Replay(strategy, recorder, bars, purger)
