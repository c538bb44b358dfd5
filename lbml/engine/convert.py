"""Canonical frames → nautilus data objects (vectorised constructors, no per-row Python)."""

import numpy as np
import pandas as pd

from nautilus_trader.model.data import Bar, BarType, QuoteTick, TradeTick
from nautilus_trader.model.instruments import Instrument


def to_bars(frame: pd.DataFrame, bar_type: BarType, instrument: Instrument) -> list[Bar]:
    ts = frame.index.asi8.astype(np.uint64)
    return Bar.from_raw_arrays_to_list(
        bar_type,
        instrument.price_precision,
        instrument.size_precision,
        frame["open"].to_numpy(np.float64),
        frame["high"].to_numpy(np.float64),
        frame["low"].to_numpy(np.float64),
        frame["close"].to_numpy(np.float64),
        frame["volume"].to_numpy(np.float64),
        ts,
        ts,
    )


def to_trade_ticks(frame: pd.DataFrame, instrument: Instrument, first_id: int = 0) -> list[TradeTick]:
    ts = frame.index.asi8.astype(np.uint64)
    # AggressorSide: 1 = BUYER, 2 = SELLER
    aggressor = np.where(frame["side"].to_numpy() > 0, 1, 2).astype(np.uint8)
    ids = [str(i) for i in range(first_id, first_id + len(frame))]
    return TradeTick.from_raw_arrays_to_list(
        instrument.id,
        instrument.price_precision,
        instrument.size_precision,
        frame["price"].to_numpy(np.float64),
        np.maximum(frame["size"].to_numpy(np.float64), 10.0**-instrument.size_precision),
        aggressor,
        ids,
        ts,
        ts,
    )


def to_quote_ticks(frame: pd.DataFrame, instrument: Instrument) -> list[QuoteTick]:
    ts = frame.index.asi8.astype(np.uint64)
    return QuoteTick.from_raw_arrays_to_list(
        instrument.id,
        instrument.price_precision,
        instrument.size_precision,
        frame["bid"].to_numpy(np.float64),
        frame["ask"].to_numpy(np.float64),
        frame["bid_size"].to_numpy(np.float64),
        frame["ask_size"].to_numpy(np.float64),
        ts,
        ts,
    )
