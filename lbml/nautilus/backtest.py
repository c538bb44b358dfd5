"""The backtest engine, its simulated venue, and the base of lbml's venue simulation modules.

``new_backtest_engine`` and ``add_margin_venue`` are the only places lbml builds a backtest engine
and its venue (fees from the instrument's maker/taker rates, a fixed order latency). ``VenueModule``
is what every lbml ``SimulationModule`` subclasses: it names the few things a module does with the
simulated exchange (read the account, its open positions and marks, look orders and positions up,
charge or credit the account, listen to fills and bars). A v2 port rewrites this module:
``backtest.BacktestEngine``, ``execution.MakerTakerFeeModel(maker, taker)``, ``StaticLatencyModel``,
and a ``SimulationModule`` whose ``process(ts_now, context)`` returns the account adjustments
(docs/ENGINE.md §8: the fill-driven modules are the hard part).
"""

from decimal import Decimal

from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import LatencyModel, MakerTakerFeeModel
from nautilus_trader.backtest.modules import SimulationModule, SimulationModuleConfig
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import AccountType, AggressorSide, OmsType
from nautilus_trader.model.identifiers import TradeId, TraderId, Venue
from nautilus_trader.model.objects import Currency, Money

from lbml.nautilus import bus

__all__ = ["BacktestEngine", "SimulationModule", "SimulationModuleConfig", "VenueModule", "add_margin_venue",
           "mark_price", "new_backtest_engine"]


def new_backtest_engine(trader_id: str | None = None, log_level: str = "ERROR") -> BacktestEngine:
    """A backtest engine logging at ``log_level`` (``trader_id``: the engine's default when None)."""
    logging = LoggingConfig(log_level=log_level)
    if trader_id is None:
        return BacktestEngine(BacktestEngineConfig(logging=logging))
    return BacktestEngine(BacktestEngineConfig(trader_id=TraderId(trader_id), logging=logging))


def add_margin_venue(
    engine: BacktestEngine,
    *,
    venue: Venue,
    base_currency: Currency,
    starting_balance: float,
    leverage: float,
    bar_execution: bool,
    latency_ns: int | None = None,
    modules: list | None = None,
) -> None:
    """Add a NETTING venue with a MARGIN account in ``base_currency``.

    Fees are the instrument's maker/taker rates; orders reach the venue ``latency_ns`` after they
    are sent (none when None). ``bar_execution``: the venue matches orders against bars, else
    against trade ticks.
    """
    engine.add_venue(
        venue=venue,
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=base_currency,
        starting_balances=[Money(starting_balance, base_currency)],
        default_leverage=Decimal(str(leverage)),
        fee_model=MakerTakerFeeModel(),
        latency_model=None if latency_ns is None else LatencyModel(base_latency_nanos=latency_ns),
        modules=modules,
        bar_execution=bar_execution,
        trade_execution=not bar_execution,
    )


def mark_price(exchange, instrument_id) -> float | None:
    """The venue's mark for ``instrument_id``: its book's mid, else the one side it has, else None."""
    book = exchange.get_book(instrument_id)
    if book is None:
        return None
    mid = book.midpoint()
    if mid is not None:
        return float(mid)
    for price in (book.best_bid_price(), book.best_ask_price()):
        if price is not None:
            return price.as_double()
    return None


class VenueModule(SimulationModule):
    """Base of lbml's venue modules: what a module reads from and does to the simulated exchange.

    Usable once the engine (or the paper node) has registered the module with its exchange.
    """

    def venue_account(self):
        """The venue's account (None before it exists)."""
        return self.exchange.get_account()

    def open_positions(self) -> list:
        """The venue's open positions."""
        exchange = self.exchange
        return exchange.cache.positions_open(venue=exchange.id)

    @property
    def venue_cache(self):
        """The engine cache the venue books into (orders, positions)."""
        return self.exchange.cache

    def venue_order(self, client_order_id):
        return self.exchange.cache.order(client_order_id)

    def venue_position(self, position_id):
        return self.exchange.cache.position(position_id)

    def venue_mark(self, instrument_id) -> float | None:
        """See ``mark_price``."""
        return mark_price(self.exchange, instrument_id)

    def adjust_balance(self, amount: float, account=None) -> None:
        """Credit (``amount`` > 0) or debit (< 0) the account in its base currency; it shows in the
        account's balance history. ``account``: the venue account when already at hand."""
        account = account if account is not None else self.exchange.get_account()
        self.exchange.adjust_account(Money(amount, account.base_currency))

    def subscribe_fills(self, handler) -> None:
        """Call ``handler(OrderFilled)`` for every fill, while the exchange processes a command."""
        bus.subscribe_fills(self.msgbus, handler)

    def subscribe_all_bars(self, handler, priority: int) -> None:
        """Call ``handler(Bar)`` for every bar, before actors and strategies of lower priority."""
        bus.subscribe_all_bars(self.msgbus, handler, priority)

    def fill_at_trade(self, instrument_id, price, size, trade_id: str, ts: int) -> bool:
        """Match the venue's resting and due orders against one trade at ``price`` now (``ts``), then
        run the venue; False when the venue does not trade ``instrument_id``."""
        engine = self.exchange.get_matching_engine(instrument_id)
        if engine is None:
            return False
        engine.process_trade_tick(
            TradeTick(instrument_id, price, size, AggressorSide.NO_AGGRESSOR, TradeId(trade_id), ts, ts)
        )
        self.exchange.process(ts)
        return True
