"""Borrow interest on an Aave-style debt, accrued continuously (D·e^{r·t}) on the venue.

The debt is read from the account and the open position through the leverage model (a long owes
q·E − cash; a short owes its base units at the mark), so every cost already charged is part of the
debt, as it is on a lending market. Interest is accrued at every ``interval_minutes`` boundary, at
every step of a rate schedule and at every fill (so a position pays for exactly the time it held
debt), and debited from the venue account (``VenueModule.adjust_balance``). With a constant rate and
no other cash flow a debt D0 held for T costs exactly D0·(e^{r·T} − 1).
"""

from dataclasses import dataclass

from lbml.engine.costs import BoundaryModule, CostLedger
from lbml.engine.position_state import position_state
from lbml.leverage.model import LeverageSpec, build_leverage_model
from lbml.leverage.rates import BorrowRate, UtilisationCurve, accrued_interest
from lbml.nautilus.backtest import SimulationModuleConfig
from lbml.nautilus.clock import NS_PER_MINUTE
from lbml.nautilus.model import OrderFilled


class LendingInterestConfig(SimulationModuleConfig, frozen=True):
    """Rate model (see ``lbml.leverage.rates.BorrowRate``) and accrual interval."""

    leverage: LeverageSpec = LeverageSpec(model="aave_lending")
    rate_kind: str = "constant"
    apr: float = 0.05
    points: tuple[tuple[int, float], ...] = ()
    utilisation: float = 0.8
    curve_base: float = 0.0
    curve_slope1: float = 0.05
    curve_slope2: float = 0.75
    curve_optimal: float = 0.90
    stress: float = 1.0
    interval_minutes: int = 60


@dataclass(frozen=True)
class Accrual:
    ts: int
    debt: float
    apr: float
    start: int
    charge: float


class LendingInterestModule(BoundaryModule):
    """Accrues and debits continuously compounded interest on the position's debt."""

    def __init__(self, config: LendingInterestConfig) -> None:
        super().__init__(config)
        self._model = build_leverage_model(config.leverage)
        self._rate = BorrowRate(
            kind=config.rate_kind,
            apr=config.apr,
            points=tuple(config.points),
            utilisation=config.utilisation,
            curve=UtilisationCurve(config.curve_base, config.curve_slope1, config.curve_slope2, config.curve_optimal),
            stress=config.stress,
        )
        self._interval_ns = config.interval_minutes * NS_PER_MINUTE
        self.ledger = CostLedger()
        self.accruals: list[Accrual] = []
        self._reset_state()

    def _reset_state(self) -> None:
        self._debt = 0.0
        self._since = 0
        self._pending = 0.0
        self._dirty = False
        self._subscribed = False
        self._next_ns = 0

    def rate_at(self, ts_ns: int) -> float:
        return self._rate.at(ts_ns)

    def _accrue(self, ts_now: int) -> None:
        if self._debt > 0.0 and ts_now > self._since:
            apr = self._rate.at(self._since)
            charge = accrued_interest(self._debt, apr, self._since, ts_now)
            self._pending += charge
            self.accruals.append(Accrual(ts_now, self._debt, apr, self._since, charge))
        self._since = max(self._since, ts_now)

    def _on_fill(self, fill: OrderFilled) -> None:
        self._accrue(fill.ts_event)
        self._dirty = True
        self._next_ns = 0

    def process(self, ts_now: int) -> None:
        if not self._subscribed:
            self.subscribe_fills(self._on_fill)
            self._subscribe()
            self._subscribed = True
            self._since = ts_now
        self._settle(ts_now)

    def _settle(self, ts_now: int) -> None:
        if ts_now < self._next_ns or not self._subscribed:
            return
        self._accrue(ts_now)
        account = self.venue_account()
        if self._pending > 0.0 and account is not None:
            amount, self._pending = self._pending, 0.0
            self.adjust_balance(-amount, account)
            self.ledger.add(ts_now, amount)
        self._debt = self._current_debt(account)
        self._dirty = False
        boundary = (ts_now // self._interval_ns + 1) * self._interval_ns
        change = self._rate.next_change(ts_now)
        self._next_ns = boundary if change is None else min(boundary, change)

    def _current_debt(self, account) -> float:
        debt = 0.0
        for position in self.open_positions():
            state = position_state(self.venue_cache, account, position.instrument_id, None)
            price = self.venue_mark(position.instrument_id)
            if state is not None and price is not None:
                debt += self._model.debt_value(state, price)
        return debt

    def log_diagnostics(self, logger) -> None:
        logger.info(f"lending interest: {self.ledger.total:.2f} over {len(self.ledger.entries)} charges")

    def reset(self) -> None:
        self.ledger = CostLedger()
        self.accruals = []
        self._reset_state()
