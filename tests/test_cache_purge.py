"""The cache purger leaves nothing of a finished round trip in the engine's memory.

nautilus 1.221's ``Cache.purge_order`` keeps the order's ``OrderList`` (and through it the orders and
their events) forever; ``lbml.nautilus.compat.purge_order_lists`` drops the lists whose orders are
all purged. A real engine replays bars while a strategy sends a bracket, then closes it, over and over.
"""

import gc

import numpy as np
from nautilus_trader.model.orders.base import Order

from lbml.engine.instruments import make_instrument
from lbml.engine.purge import purge_when_flat
from lbml.nautilus.backtest import add_margin_venue, new_backtest_engine
from lbml.nautilus.clock import component_now_ns
from lbml.nautilus.model import Bar, BarType, OrderSide, TimeInForce, Venue, bar_type_for, bars_from_arrays, make_price, make_qty
from lbml.nautilus.trading import OrderList, Strategy, StrategyConfig
from lbml.scenario import CostsConfig

N_BARS = 600
TRADER = "PURGE-001"


class _RoundTripsConfig(StrategyConfig, frozen=True):
    bar_type: BarType
    purge_lists: bool = True


class _RoundTrips(Strategy):
    """Enters with a bracket on one bar, closes at market on the next, purges when flat."""

    def __init__(self, config: _RoundTripsConfig) -> None:
        super().__init__(config)
        self.n_brackets = 0
        self.max_order_lists = 0

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        iid = self.config.bar_type.instrument_id
        if self.config.purge_lists:
            purge_when_flat(self.cache, component_now_ns(self))
        else:  # what nautilus alone does: orders and positions only
            if not self.cache.positions_open_count() and not self.cache.orders_open_count():
                self.cache.purge_closed_orders(component_now_ns(self), 0)
                self.cache.purge_closed_positions(component_now_ns(self), 0)
        self.max_order_lists = max(self.max_order_lists, len(self.cache.order_lists()))
        if self.cache.positions_open_count():
            self.close_all_positions(iid)
            self.cancel_all_orders(iid)
        elif not self.cache.orders_open_count():
            instrument = self.cache.instrument(iid)
            close = bar.close.as_double()
            bracket: OrderList = self.order_factory.bracket(
                instrument_id=iid, order_side=OrderSide.BUY, quantity=make_qty(instrument, 1.0),
                sl_trigger_price=make_price(instrument, close * 0.5), tp_price=make_price(instrument, close * 2.0),
                time_in_force=TimeInForce.GTC,
            )
            self.submit_order_list(bracket)
            self.n_brackets += 1


def _run(purge_lists: bool) -> tuple[_RoundTrips, int, int]:
    instrument = make_instrument("BNBUSDT", "BINANCE", 2, 3, CostsConfig())
    bar_type = bar_type_for(instrument.id, 1, internal=False)
    rng = np.random.default_rng(7)
    close = 300.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, N_BARS)))
    ts = (1_700_000_000 + 60 * np.arange(1, N_BARS + 1)).astype(np.int64) * 1_000_000_000
    bars = bars_from_arrays(bar_type, instrument, close, close * 1.001, close * 0.999, close, np.full(N_BARS, 100.0), ts)
    engine = new_backtest_engine(TRADER)
    add_margin_venue(engine, venue=Venue("BINANCE"), base_currency=instrument.quote_currency,
                     starting_balance=100_000.0, leverage=1.0, bar_execution=True)
    engine.add_instrument(instrument)
    engine.add_data(bars)
    strategy = _RoundTrips(_RoundTripsConfig(bar_type=bar_type, purge_lists=purge_lists))
    engine.add_strategy(strategy)
    engine.run()
    gc.collect()
    # This run's orders only (other tests may have left theirs to the garbage collector).
    live_orders = sum(issubclass(type(o), Order) and o.trader_id.value == TRADER for o in gc.get_objects())
    order_lists = len(engine.cache.order_lists())
    engine.dispose()
    return strategy, live_orders, order_lists


def test_finished_round_trips_leave_no_order_or_order_list_behind():
    strategy, live_orders, order_lists = _run(purge_lists=True)
    assert strategy.n_brackets >= N_BARS // 3  # many round trips were made
    assert strategy.max_order_lists <= 1  # at most the bracket in flight
    assert order_lists <= 1 and live_orders <= 4  # its three orders, and a close at the end


def test_nautilus_alone_keeps_every_bracket():
    # The engine behaviour the purge works around: purging orders keeps their lists, so every bracket
    # ever sent (three orders each) stays in memory. If a nautilus release fixes it, this fails and
    # ``purge_order_lists`` can go.
    strategy, live_orders, order_lists = _run(purge_lists=False)
    assert order_lists == strategy.n_brackets
    assert live_orders >= 3 * strategy.n_brackets
