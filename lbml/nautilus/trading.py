"""Strategies, actors, their configs and order lists, and the account reads they share.

lbml's components subclass ``Strategy`` / ``Actor`` and are configured by frozen msgspec configs
(``StrategyConfig`` / ``ActorConfig`` subclasses; ``NautilusConfig`` for nested values such as
``LeverageSpec``). A v2 port maps ``Actor`` to ``common.DataActor``, and moves the configs to lbml's
own objects: v2's ``StrategyConfig`` cannot be subclassed with fields (docs/ENGINE.md §8).
"""

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import (
    ActorConfig,
    NautilusConfig,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    StrategyConfig,
)
from nautilus_trader.model.orders import OrderList
from nautilus_trader.trading.strategy import Strategy

__all__ = ["Actor", "ActorConfig", "NautilusConfig", "NonNegativeFloat", "OrderList", "PositiveFloat",
           "PositiveInt", "Strategy", "StrategyConfig", "cash_balance"]


def cash_balance(account) -> float:
    """The account's total balance in its base currency (cash, before unrealized PnL)."""
    return account.balance_total(account.base_currency).as_double()
