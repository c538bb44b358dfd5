"""Nautilus instruments for lbml's symbols."""

from decimal import Decimal

import numpy as np

from lbml.nautilus.model import (
    USDT,
    Currency,
    CurrencyPair,
    CurrencyType,
    InstrumentId,
    Money,
    Price,
    Quantity,
    Symbol,
    Venue,
)
from lbml.scenario import CostsConfig

MAX_PRECISION = 9


def infer_precision(values: np.ndarray, max_precision: int = MAX_PRECISION) -> int:
    """Return the number of decimals needed to represent ``values`` exactly (sampled)."""
    sample = np.asarray(values[: 20_000], dtype=np.float64)
    for p in range(max_precision + 1):
        scaled = sample * 10**p
        # At most 1e-4 of the last digit (a purely relative bound accepted 58570.07 at 1 decimal).
        if np.all(np.abs(scaled - np.round(scaled)) <= np.minimum(1e-4, 1e-6 * np.abs(scaled)) + 1e-12):
            return p
    return max_precision


def make_instrument(
    symbol: str,
    venue: str,
    price_precision: int,
    size_precision: int,
    costs: CostsConfig,
) -> CurrencyPair:
    """A spot pair traded on a MARGIN account (leverage from the venue, margin_init = 1)."""
    base = symbol[:-4] if symbol.endswith("USDT") else symbol[:3]
    quote = USDT if symbol.endswith("USDT") else Currency.from_str(symbol[len(base):])
    price_inc = Price(10.0**-price_precision, price_precision)
    size_inc = Quantity(10.0**-size_precision, size_precision)
    return CurrencyPair(
        instrument_id=InstrumentId(Symbol(symbol), Venue(venue)),
        raw_symbol=Symbol(symbol),
        base_currency=_currency(base),
        quote_currency=quote,
        price_precision=price_precision,
        size_precision=size_precision,
        price_increment=price_inc,
        size_increment=size_inc,
        lot_size=None,
        max_quantity=None,
        min_quantity=size_inc,
        max_notional=None,
        min_notional=None,
        max_price=None,
        min_price=None,
        margin_init=Decimal(1),
        margin_maint=Decimal("0.5"),
        maker_fee=Decimal(str(costs.maker_fee)),
        taker_fee=Decimal(str(costs.taker_fee)),
        ts_event=0,
        ts_init=0,
    )


def _currency(code: str) -> Currency:
    try:
        return Currency.from_str(code, strict=True)
    except Exception:  # noqa: BLE001 - unknown codes become crypto currencies with 8 decimals
        return Currency(code, 8, 0, code, CurrencyType.CRYPTO)


def starting_balance(amount: float) -> Money:
    return Money(amount, USDT)
