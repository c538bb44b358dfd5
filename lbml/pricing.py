"""How a scenario's strategy prices a trade: its payoff, its costs and its exposure caps.

Training learns a ``Pricing`` on the training window (the bracket payoff given the label, the
expected funding rate, the typical one-minute volatility for the slippage model) and stores it in
the model's manifest, where the integrity check covers it. The out-of-fold evaluation, the
backtest strategy, the paper strategy and the signal publisher all build their ``KellyParams``
from it through ``kelly_params_for``, so every mode applies the same EV rule to the same numbers.
"""

from dataclasses import dataclass
from typing import Any

from lbml.cost_model import CostModel, cost_model_for
from lbml.leverage.model import build_leverage_model, leverage_spec
from lbml.sizing import KellyParams, Payoff


@dataclass(frozen=True)
class Pricing:
    """What training measured that prices a trade (stored in the artifact's manifest)."""

    payoff: Payoff
    funding_per_settlement: float = 0.0
    funding_interval_minutes: float = 480.0
    sigma_1m: float = 0.0  # mean one-minute log-return volatility of the training window

    def to_dict(self) -> dict[str, Any]:
        return {
            "payoff": self.payoff.to_dict(),
            "funding_per_settlement": self.funding_per_settlement,
            "funding_interval_minutes": self.funding_interval_minutes,
            "sigma_1m": self.sigma_1m,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Pricing":
        return cls(
            payoff=Payoff(**raw["payoff"]),
            funding_per_settlement=float(raw.get("funding_per_settlement", 0.0)),
            funding_interval_minutes=float(raw.get("funding_interval_minutes", 480.0)),
            sigma_1m=float(raw.get("sigma_1m", 0.0)),
        )


def exposure_caps(max_leverage: float, leverage_spec) -> tuple[float, float]:
    """``(long, short)`` leverage caps: the scenario's, never above what the leverage model allows
    (a lending market lends less against a short: Aave's LTV / (1 − LTV) of equity)."""
    if leverage_spec is None:
        return max_leverage, max_leverage
    model = build_leverage_model(leverage_spec)
    return min(max_leverage, model.max_exposure), min(max_leverage, model.max_short_exposure)


def position_caps(max_leverage: float, max_position_fraction: float, leverage_spec) -> tuple[float, float]:
    """``(long, short)`` caps on a position's exposure (multiples of equity): the leverage caps times
    ``max_position_fraction``. No lbml strategy sizes above them; the run recorder checks it."""
    long_cap, short_cap = exposure_caps(max_leverage, leverage_spec)
    return long_cap * max_position_fraction, short_cap * max_position_fraction


def scenario_cost_model(scenario, pricing: Pricing | None) -> CostModel:
    if pricing is None:
        return cost_model_for(scenario)
    return cost_model_for(scenario, pricing.funding_per_settlement, pricing.funding_interval_minutes)


def kelly_params(
    *,
    kelly_fraction: float,
    max_leverage: float,
    max_position_fraction: float,
    min_notional: float,
    payoff: Payoff,
    costs: CostModel,
    leverage_spec=None,
    probability_shrinkage: float = 1.0,
    probability_n_eff: float = 0.0,
    ev_margin: float = 0.0,
) -> KellyParams:
    """The sizing rule of a strategy configured with these fields (the strategy's own config)."""
    long_cap, short_cap = exposure_caps(max_leverage, leverage_spec)
    return KellyParams(
        kelly_fraction=kelly_fraction,
        max_leverage=long_cap,
        max_position_fraction=max_position_fraction,
        min_notional=min_notional,
        payoff=payoff,
        costs=costs,
        probability_shrinkage=probability_shrinkage,
        probability_n_eff=probability_n_eff,
        ev_margin=ev_margin,
        max_short_exposure=short_cap * max_position_fraction,
    )


def kelly_params_for(scenario, pricing: Pricing, ev_margin: float = 0.0) -> KellyParams:
    """The ``KellyParams`` the scenario's strategy will apply with a model priced by ``pricing``."""
    s = scenario.strategy
    return kelly_params(
        kelly_fraction=s.kelly_fraction,
        max_leverage=s.max_leverage,
        max_position_fraction=s.max_position_fraction,
        min_notional=s.min_notional,
        payoff=pricing.payoff,
        costs=scenario_cost_model(scenario, pricing),
        leverage_spec=leverage_spec(scenario.leverage),
        probability_shrinkage=s.probability_shrinkage,
        probability_n_eff=s.probability_n_eff,
        ev_margin=ev_margin,
    )
