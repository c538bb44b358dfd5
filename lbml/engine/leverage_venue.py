"""Build the venue side of a scenario's leverage model: which cost modules the simulated exchange
runs, and the ``LeverageSpec`` the strategy's liquidation guard and the recorder use."""

from dataclasses import dataclass, field

import pandas as pd

from lbml.data.frames import MarketData
from lbml.engine.costs import BorrowInterestModule, CostLedger
from lbml.engine.funding import FundingConfig, FundingModule
from lbml.engine.lending import LendingInterestConfig, LendingInterestModule
from lbml.engine.liquidation import LiquidationConfig, LiquidationModule
from lbml.errors import DataError
from lbml.leverage.model import LeverageSpec, leverage_spec
from lbml.scenario import LeverageConfig, Scenario
from lbml.split import Split


@dataclass
class VenueLeverage:
    """The modules to attach to the venue and where their ledgers are."""

    spec: LeverageSpec | None
    modules: list = field(default_factory=list)
    borrow: BorrowInterestModule | LendingInterestModule | None = None
    funding: FundingModule | None = None
    liquidation: LiquidationModule | None = None

    def ledger(self, module) -> CostLedger:
        return module.ledger if module is not None else CostLedger()

    @property
    def n_liquidations(self) -> int:
        return self.liquidation.n_liquidations if self.liquidation is not None else 0

    def strategy_kwargs(self) -> dict:
        return {"leverage": self.spec} if self.spec is not None else {}


def lending_config(cfg: LeverageConfig, spec: LeverageSpec) -> LendingInterestConfig:
    return LendingInterestConfig(
        leverage=spec,
        rate_kind=cfg.borrow_rate,
        apr=cfg.borrow_apr,
        points=tuple((pd.Timestamp(t).value if pd.Timestamp(t).tzinfo else pd.Timestamp(t, tz="UTC").value, v)
                     for t, v in cfg.rate_schedule),
        utilisation=cfg.utilisation,
        curve_base=cfg.curve_base,
        curve_slope1=cfg.curve_slope1,
        curve_slope2=cfg.curve_slope2,
        curve_optimal=cfg.optimal_utilisation,
        stress=cfg.stress_multiplier,
        interval_minutes=cfg.accrual_minutes,
    )


def venue_leverage(scenario: Scenario, market: MarketData, split: Split, borrow: BorrowInterestModule) -> VenueLeverage:
    """Return the modules for ``scenario.leverage`` (``borrow`` is the plain module used by ``none``)."""
    cfg = scenario.leverage
    spec = leverage_spec(cfg)
    if spec is None:
        return VenueLeverage(spec=None, modules=[borrow], borrow=borrow)
    liquidation = LiquidationModule(LiquidationConfig(leverage=spec))
    if cfg.model == "aave_lending":
        lending = LendingInterestModule(lending_config(cfg, spec))
        return VenueLeverage(spec, [lending, liquidation], borrow=lending, liquidation=liquidation)
    funding = None
    if cfg.funding:
        series = market.funding.get(scenario.data.symbol)
        if series is None or not len(series):
            raise DataError(
                f"leverage.funding: no funding-rate series for {scenario.data.symbol} "
                "(add data.funding_paths or set leverage.funding = false)"
            )
        window = series.loc[(series.index > split.test_start) & (series.index <= split.test_end)]
        funding = FundingModule(
            FundingConfig(times_ns=tuple(int(t) for t in window.index.asi8), rates=tuple(float(r) for r in window["rate"]),
                          multiplier=cfg.funding_multiplier)
        )
    modules = [m for m in (funding, liquidation) if m is not None]
    return VenueLeverage(spec, modules, funding=funding, liquidation=liquidation)
