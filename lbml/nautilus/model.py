"""The engine's value types, enums, identifiers, events, instruments and market data, and how lbml
builds them from plain floats and arrays.

A v2 port maps the names (docs/ENGINE.md §8: e.g. ``AggressorSide.BUYER`` becomes ``BUY``,
``model.currencies.USDT`` becomes ``Currency.from_str("USDT")``) and rewrites the builders below
(``Bar.from_raw_arrays_to_list`` and its tick siblings do not exist on v2).
"""

import numpy as np

from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.data import Bar, BarType, QuoteTick, TradeTick
from nautilus_trader.model.enums import (
    AccountType,
    AggressorSide,
    CurrencyType,
    LiquiditySide,
    OmsType,
    OrderSide,
    OrderType,
    PositionSide,
    TimeInForce,
    TrailingOffsetType,
    TriggerType,
    order_side_to_str,
    order_status_to_str,
    order_type_to_str,
)
from nautilus_trader.model.events import (
    OrderCanceled,
    OrderCancelRejected,
    OrderFilled,
    OrderModifyRejected,
    OrderPendingCancel,
    OrderPendingUpdate,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
)
from nautilus_trader.model.identifiers import ClientId, ClientOrderId, InstrumentId, Symbol, TradeId, TraderId, Venue
from nautilus_trader.model.instruments import CurrencyPair, Instrument
from nautilus_trader.model.objects import PRICE_MAX, QUANTITY_MAX, Currency, Money, Price, Quantity

__all__ = [
    "AccountType", "AggressorSide", "Bar", "BarType", "ClientId", "ClientOrderId", "Currency", "CurrencyPair",
    "CurrencyType", "Instrument", "InstrumentId", "LiquiditySide", "Money", "OmsType", "OrderCanceled", "OrderCancelRejected",
    "OrderFilled", "OrderModifyRejected", "OrderPendingCancel", "OrderPendingUpdate", "OrderSide", "OrderUpdated",
    "OrderType", "PositionClosed", "PositionOpened", "PositionSide", "PRICE_MAX", "Price", "QUANTITY_MAX", "Quantity", "QuoteTick", "Symbol",
    "TimeInForce", "TradeId", "TradeTick", "TraderId", "TrailingOffsetType", "TriggerType", "USDT", "Venue",
    "bar_type_for", "bars_from_arrays", "make_bar", "make_price", "make_qty", "make_quote_tick", "make_trade_tick",
    "order_side_to_str", "order_status_to_str", "order_type_to_str", "quote_ticks_from_arrays",
    "trade_ticks_from_arrays",
]

_BUYER, _SELLER = 1, 2  # AggressorSide.BUYER / SELLER as the raw-array constructors take them


def bar_type_for(instrument_id: InstrumentId, minutes: int, internal: bool) -> BarType:
    """The last-price time bar of ``minutes`` on ``instrument_id``: INTERNAL (aggregated by the
    engine from trades) or EXTERNAL (delivered as bars)."""
    source = "INTERNAL" if internal else "EXTERNAL"
    return BarType.from_str(f"{instrument_id}-{minutes}-MINUTE-LAST-{source}")


def make_price(instrument: Instrument, value) -> Price:
    """``value`` rounded to the instrument's price increment."""
    return instrument.make_price(value)


def make_qty(instrument: Instrument, value, *, round_down: bool = False) -> Quantity:
    """``value`` rounded (or, with ``round_down``, floored) to the instrument's size increment."""
    return instrument.make_qty(value, round_down=round_down)


def bars_from_arrays(bar_type: BarType, instrument: Instrument, open_: np.ndarray, high: np.ndarray,
                     low: np.ndarray, close: np.ndarray, volume: np.ndarray, ts_ns: np.ndarray) -> list[Bar]:
    """Bars from float64 columns at the instrument's precisions, ``ts_event = ts_init = ts_ns``."""
    ts = ts_ns.astype(np.uint64)
    return Bar.from_raw_arrays_to_list(
        bar_type, instrument.price_precision, instrument.size_precision, open_, high, low, close, volume, ts, ts,
    )


def trade_ticks_from_arrays(instrument: Instrument, price: np.ndarray, size: np.ndarray, buyer: np.ndarray,
                            trade_ids: list[str], ts_ns: np.ndarray) -> list[TradeTick]:
    """Trade ticks from float64 columns; ``buyer`` (bool) marks trades a buyer took (else a seller)."""
    ts = ts_ns.astype(np.uint64)
    aggressor = np.where(buyer, _BUYER, _SELLER).astype(np.uint8)
    return TradeTick.from_raw_arrays_to_list(
        instrument.id, instrument.price_precision, instrument.size_precision, price, size, aggressor, trade_ids, ts, ts,
    )


def quote_ticks_from_arrays(instrument: Instrument, bid: np.ndarray, ask: np.ndarray, bid_size: np.ndarray,
                            ask_size: np.ndarray, ts_ns: np.ndarray) -> list[QuoteTick]:
    """Quote ticks (best bid/ask and sizes) from float64 columns."""
    ts = ts_ns.astype(np.uint64)
    return QuoteTick.from_raw_arrays_to_list(
        instrument.id, instrument.price_precision, instrument.size_precision, bid, ask, bid_size, ask_size, ts, ts,
    )


def make_trade_tick(instrument: Instrument, price: float, size: float, buyer: bool, trade_id: str, ts: int) -> TradeTick:
    """One trade at the instrument's precisions (``price`` and ``size`` taken as they are)."""
    pp, sp = instrument.price_precision, instrument.size_precision
    return TradeTick(
        instrument_id=instrument.id,
        price=Price(price, pp),
        size=Quantity(size, sp),
        aggressor_side=AggressorSide.BUYER if buyer else AggressorSide.SELLER,
        trade_id=TradeId(trade_id),
        ts_event=ts,
        ts_init=ts,
    )


def make_quote_tick(instrument: Instrument, bid: float, ask: float, bid_size: float, ask_size: float, ts: int) -> QuoteTick:
    """One best bid/ask at the instrument's precisions."""
    pp, sp = instrument.price_precision, instrument.size_precision
    return QuoteTick(
        instrument_id=instrument.id,
        bid_price=Price(bid, pp),
        ask_price=Price(ask, pp),
        bid_size=Quantity(bid_size, sp),
        ask_size=Quantity(ask_size, sp),
        ts_event=ts,
        ts_init=ts,
    )


def make_bar(bar_type: BarType, instrument: Instrument, open_: float, high: float, low: float, close: float,
        volume: float, ts: int) -> Bar:
    """One bar, prices and volume rounded to the instrument's increments."""
    return Bar(
        bar_type,
        instrument.make_price(open_),
        instrument.make_price(high),
        instrument.make_price(low),
        instrument.make_price(close),
        instrument.make_qty(volume),
        ts,
        ts,
    )
