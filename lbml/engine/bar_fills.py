"""Bar-mode fills at the next bar's open, not its close.

With EXTERNAL bars, an order decided on bar t's close reaches the venue after ``latency_ms``; the
next market event is bar t+1, which nautilus 1.221 processes as four trades (open, high, low, close)
and only then runs the venue, so the order would fill at bar t+1's *close*: a full bar late. The
first trade after the decision is bar t+1's open. ``NextOpenFillModule`` runs in ``pre_process`` of
each bar of the traded instrument, before the matching engine sees it: it applies the bar's open to
the matching engine's book as one trade and runs the venue, so commands already due are executed at
that open (a market order fills at it; resting orders are matched against it exactly as the bar's
own open step would). The bar's high, low and close are then processed as usual, so the new
position's stop-loss and take-profit are already live for the rest of that bar. The fill carries
the bar's timestamp (its close), the only clock the engine has at that point.
"""

from lbml.nautilus.backtest import SimulationModuleConfig, VenueModule
from lbml.nautilus.model import Bar, InstrumentId


class NextOpenFillConfig(SimulationModuleConfig, frozen=True):
    instrument_id: str = ""


class NextOpenFillModule(VenueModule):
    """Executes the commands due at a bar's open against that open (bar execution only)."""

    def __init__(self, config: NextOpenFillConfig) -> None:
        super().__init__(config)
        self._instrument_id = InstrumentId.from_str(config.instrument_id)
        self.n_bars = 0

    def pre_process(self, data) -> None:
        if not isinstance(data, Bar) or data.bar_type.instrument_id != self._instrument_id:
            return
        if data.volume.as_double() <= 0.0:  # nothing traded: no open to fill at (a trade needs a size)
            return
        if self.fill_at_trade(self._instrument_id, data.open, data.volume, f"OPEN-{self.n_bars + 1}", data.ts_init):
            self.n_bars += 1

    def process(self, ts_now: int) -> None:
        pass

    def log_diagnostics(self, logger) -> None:
        logger.info(f"next-open fills: {self.n_bars} bars opened before matching")

    def reset(self) -> None:
        self.n_bars = 0
