"""Perpetual funding payments at funding times, from a funding-rate series (as-of), on the venue.

At each settlement time every open position pays ``rate × quantity × mark`` (longs pay a positive
rate, shorts receive it). The module is a ``SimulationModule``: the charge goes to the venue
account (``VenueModule.adjust_balance``) at the first market event at or after the settlement
time, using the position held at that moment. The ledger holds net payments (negative = received).
"""

import numpy as np

from lbml.engine.costs import CostLedger
from lbml.nautilus.backtest import SimulationModuleConfig, VenueModule
from lbml.nautilus.model import PositionSide


class FundingConfig(SimulationModuleConfig, frozen=True):
    """Funding settlements as parallel tuples: times (ns) and rates (per settlement)."""

    times_ns: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    multiplier: float = 1.0  # stress factor applied to every rate


class FundingModule(VenueModule):
    """Charges (or credits) funding on open positions at each settlement time."""

    def __init__(self, config: FundingConfig) -> None:
        super().__init__(config)
        if len(config.times_ns) != len(config.rates):
            raise ValueError("funding times and rates differ in length")
        self._times = np.asarray(config.times_ns, dtype=np.int64)
        self._multiplier = config.multiplier
        self._rates = np.asarray(config.rates, dtype=np.float64) * config.multiplier
        self.ledger = CostLedger()
        self.settlements: list[tuple[int, float, float]] = []  # (settlement ts, rate, signed notional)
        self._i = 0
        self._next_ns = int(self._times[0]) if len(self._times) else np.iinfo(np.int64).max

    def announce(self, ts_ns: int, rate: float) -> None:
        """Add a settlement a live feed reports after the last known one (earlier ones are known).

        A paper session's venue starts with the scenario's funding series; settlements a live feed
        delivers later extend it, so funding keeps being charged past the end of the stored data.
        """
        if len(self._times) and ts_ns <= int(self._times[-1]):
            return
        self._times = np.append(self._times, np.int64(ts_ns))
        self._rates = np.append(self._rates, rate * self._multiplier)
        if self._i == len(self._times) - 1:
            self._next_ns = ts_ns

    def process(self, ts_now: int) -> None:
        if ts_now < self._next_ns:
            return
        j = int(np.searchsorted(self._times, ts_now, side="right"))
        for k in range(self._i, j):
            self._settle(int(self._times[k]), float(self._rates[k]), ts_now)
        self._i = j
        self._next_ns = int(self._times[j]) if j < len(self._times) else np.iinfo(np.int64).max

    def _settle(self, settle_ns: int, rate: float, ts_now: int) -> None:
        account = self.venue_account()
        if account is None:
            return
        signed_notional = 0.0
        for position in self.open_positions():
            price = self.venue_mark(position.instrument_id)
            if price is None:
                continue
            sign = 1.0 if position.side == PositionSide.LONG else -1.0
            signed_notional += sign * position.quantity.as_double() * price
        if signed_notional == 0.0:
            return
        payment = rate * signed_notional
        self.adjust_balance(-payment, account)
        self.ledger.add(ts_now, payment)
        self.settlements.append((settle_ns, rate, signed_notional))

    def log_diagnostics(self, logger) -> None:
        logger.info(f"funding: {self.ledger.total:.2f} over {len(self.ledger.entries)} settlements")

    def reset(self) -> None:
        self.ledger = CostLedger()
        self.settlements = []
        self._i = 0
        self._next_ns = int(self._times[0]) if len(self._times) else np.iinfo(np.int64).max
