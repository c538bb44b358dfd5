"""Costs nautilus does not simulate for crypto margin trading: borrow interest and slippage.

Both are ``SimulationModule``s attached to the simulated exchange (the backtest venue, or the
sandbox exchange in paper trading), so backtest and live charge them identically. Charges go
through the venue's account (``VenueModule.adjust_balance``, ``lbml.nautilus.backtest``) and
therefore show up in the account's balance history; each module also keeps its own ledger for the
cost breakdown and the equity reconciliation.
"""

from dataclasses import dataclass, field

from lbml.engine.position_state import position_state
from lbml.leverage.lending import LendingState
from lbml.nautilus.backtest import SimulationModuleConfig, VenueModule
from lbml.nautilus.clock import NS_PER_YEAR, minutes_to_ns
from lbml.nautilus.model import LiquiditySide, OrderFilled


@dataclass
class CostLedger:
    """Every charge a module made: (ts, amount) pairs and their total."""

    entries: list[tuple[int, float]] = field(default_factory=list)
    total: float = 0.0

    def add(self, ts: int, amount: float) -> None:
        self.entries.append((ts, amount))
        self.total += amount


class BorrowInterestConfig(SimulationModuleConfig, frozen=True):
    """Simple interest on borrowed funds, charged every ``interval_minutes`` (like exchange margin).

    A long position borrows the quote currency beyond the account's equity (its loan: notional −
    equity, i.e. q·E − cash at average entry price E); a short position borrows its whole
    base-asset notional.
    """

    quote_apr: float = 0.08
    base_apr: float = 0.05
    interval_minutes: int = 60


class BoundaryModule(VenueModule):
    """A module that settles something at interval boundaries, at the first moment it can see one.

    ``_settle(ts)`` runs before each market event is matched (``pre_process``: the position held up
    to the event pays for the boundaries it spanned, even across a data gap or when the event's
    fill closes it), on every bar before the strategy and the recorder see it (a bar subscription
    with a priority above theirs: the equity marked at a boundary has that boundary's charge
    posted) and in ``process`` (the venue's own step, e.g. after a timer).
    """

    BAR_PRIORITY = 10

    def _settle(self, ts: int) -> None:
        raise NotImplementedError

    def _on_bar(self, bar) -> None:
        self._settle(bar.ts_event)

    def _subscribe(self) -> None:
        self.subscribe_all_bars(self._on_bar, self.BAR_PRIORITY)

    def pre_process(self, data) -> None:
        self._settle(data.ts_init)


class BorrowInterestModule(BoundaryModule):
    """Charges borrow interest on open positions for every interval boundary they are held over."""

    def __init__(self, config: BorrowInterestConfig) -> None:
        super().__init__(config)
        self._interval_ns = minutes_to_ns(config.interval_minutes)
        self._years = self._interval_ns / NS_PER_YEAR
        self._quote_apr = config.quote_apr
        self._base_apr = config.base_apr
        self.ledger = CostLedger()
        self._next_ns = 0
        self._subscribed = False

    def process(self, ts_now: int) -> None:
        if not self._subscribed:
            self._subscribe()
            self._subscribed = True
        self._settle(ts_now)

    def _settle(self, ts: int) -> None:
        if ts < self._next_ns:
            return
        if self._next_ns:
            # Every boundary since the last charge (a data gap spans several), at the loan held over them.
            self._charge(ts, (ts - self._next_ns) // self._interval_ns + 1)
        # Next boundary computed arithmetically (the live sandbox first calls process(0)).
        self._next_ns = (ts // self._interval_ns + 1) * self._interval_ns

    def _charge(self, ts_now: int, intervals: int) -> None:
        account = self.venue_account()
        if account is None:
            return
        charge = 0.0
        for position in self.open_positions():
            state = position_state(self.venue_cache, account, position.instrument_id, None)
            price = self.venue_mark(position.instrument_id)
            if state is None or price is None:
                continue
            debt = LendingState(state.long, state.quantity, state.avg_price, state.balance).debt_value(price)
            charge += max(0.0, debt) * (self._quote_apr if state.long else self._base_apr)
        charge *= self._years * intervals
        if charge > 0.0:
            self.adjust_balance(-charge, account)
            self.ledger.add(ts_now, charge)

    def log_diagnostics(self, logger) -> None:
        logger.info(f"borrow interest: {self.ledger.total:.2f} over {len(self.ledger.entries)} charges")

    def reset(self) -> None:
        self.ledger = CostLedger()
        self._next_ns = 0


class FillChargeModule(VenueModule):
    """Base of the modules that charge something per fill (slippage, gas, gap-through, liquidation).

    Fills arrive on the message bus (``events.fills.*``) while the exchange processes a command;
    ``charge_for`` decides the amount, and the total is debited afterwards in ``process`` (never
    re-entrantly from inside the fill) and written to ``ledger``.
    """

    def __init__(self, config: SimulationModuleConfig) -> None:
        super().__init__(config)
        self.ledger = CostLedger()
        self._pending = 0.0
        self._subscribed = False

    def charge_for(self, fill: OrderFilled) -> float:
        """Return the amount (account currency, >= 0) this fill costs."""
        raise NotImplementedError

    def _on_fill(self, fill: OrderFilled) -> None:
        self._pending += self.charge_for(fill)

    def process(self, ts_now: int) -> None:
        if not self._subscribed:
            self.subscribe_fills(self._on_fill)
            self._subscribed = True
        if self._pending > 0.0:
            amount, self._pending = self._pending, 0.0
            self.adjust_balance(-amount)
            self.ledger.add(ts_now, amount)

    def reset(self) -> None:
        self.ledger = CostLedger()
        self._pending = 0.0


class SlippageConfig(SimulationModuleConfig, frozen=True):
    """Slippage charged on taker fills, in basis points of the filled notional."""

    taker_bps: float = 1.0


class SlippageModule(FillChargeModule):
    """Debits ``taker_bps`` of every taker fill's notional after the fill is processed."""

    def __init__(self, config: SlippageConfig) -> None:
        super().__init__(config)
        self._rate = config.taker_bps / 1e4

    def charge_for(self, fill: OrderFilled) -> float:
        if fill.liquidity_side != LiquiditySide.TAKER:
            return 0.0
        return fill.last_qty.as_double() * fill.last_px.as_double() * self._rate

    def log_diagnostics(self, logger) -> None:
        logger.info(f"slippage: {self.ledger.total:.2f}")
