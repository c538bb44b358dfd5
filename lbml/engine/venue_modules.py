"""The simulated venue's cost and risk modules, built once for backtests and paper trading alike.

Both the backtest venue and the paper-trading sandbox exchange get exactly these modules, so borrow,
funding, liquidation, slippage, gap-through and gas costs are charged by the same code in both.
"""

from dataclasses import dataclass

from lbml.cost_model import cost_model_for
from lbml.data.frames import MarketData
from lbml.engine.bar_fills import NextOpenFillConfig, NextOpenFillModule
from lbml.engine.cost_modules import GasConfig, GasModule, slippage_module
from lbml.engine.costs import BorrowInterestConfig, BorrowInterestModule
from lbml.engine.gaps import GapThroughModule
from lbml.engine.leverage_venue import VenueLeverage, venue_leverage
from lbml.scenario import Scenario
from lbml.split import Split


@dataclass
class VenueModules:
    """The modules to attach to a venue, with named access to their ledgers."""

    leverage: VenueLeverage
    slippage: object
    gaps: GapThroughModule
    gas: GasModule
    next_open: NextOpenFillModule | None = None  # bar data with [venue] bar_fill = "next_open"

    @property
    def modules(self) -> list:
        # Gap-through sees a bar's open before the next-open fills it prices, volatility slippage after
        # them (σ known before the fill); liquidation last: an isolated position's loss is capped after
        # every charge of its closing fill.
        liquidation = self.leverage.liquidation
        first = [m for m in self.leverage.modules if m is not liquidation]
        return [*first, self.gaps, *([self.next_open] if self.next_open is not None else []), self.slippage, self.gas,
                *([liquidation] if liquidation is not None else [])]

    @property
    def borrow(self):
        return self.leverage.borrow


def venue_modules(scenario: Scenario, market: MarketData, split: Split) -> VenueModules:
    """Build the scenario's venue modules (funding series are cut to the backtest window).

    The rates come from the scenario's ``CostModel`` (``lbml.cost_model``), the one the EV rule
    prices trades with.
    """
    rates = cost_model_for(scenario)
    borrow = BorrowInterestModule(
        BorrowInterestConfig(
            quote_apr=rates.long_borrow_apr,
            base_apr=rates.short_borrow_apr,
            interval_minutes=scenario.costs.borrow_interval_minutes,
        )
    )
    symbol = scenario.data.symbol
    bars = symbol in market.instruments and not market[symbol].has_ticks
    next_open = None
    if bars and scenario.venue.bar_fill == "next_open":
        next_open = NextOpenFillModule(
            NextOpenFillConfig(instrument_id=f"{symbol}.{scenario.data.venue}", bar_minutes=market.bar_minutes),
            market[symbol].bars,
        )
    mods = VenueModules(
        leverage=venue_leverage(scenario, market, split, borrow),
        slippage=slippage_module(rates),
        gaps=GapThroughModule(),
        gas=GasModule(GasConfig(per_transaction=rates.gas_per_tx)),
        next_open=next_open,
    )
    if next_open is not None:
        order = mods.modules
        next_open.precede_with(order[: order.index(next_open)])
    return mods
