"""Canonical frames → nautilus data objects (vectorised constructors, no per-row Python)."""

import numpy as np
import pandas as pd

from lbml.nautilus.clock import index_ns
from lbml.nautilus.model import (
    Bar,
    BarType,
    Instrument,
    QuoteTick,
    TradeTick,
    bars_from_arrays,
    quote_ticks_from_arrays,
    trade_ticks_from_arrays,
)


def to_bars(frame: pd.DataFrame, bar_type: BarType, instrument: Instrument) -> list[Bar]:
    return bars_from_arrays(
        bar_type,
        instrument,
        frame["open"].to_numpy(np.float64),
        frame["high"].to_numpy(np.float64),
        frame["low"].to_numpy(np.float64),
        frame["close"].to_numpy(np.float64),
        frame["volume"].to_numpy(np.float64),
        index_ns(frame.index),
    )


def to_trade_ticks(frame: pd.DataFrame, instrument: Instrument, first_id: int = 0) -> list[TradeTick]:
    ids = [str(i) for i in range(first_id, first_id + len(frame))]
    return trade_ticks_from_arrays(
        instrument,
        frame["price"].to_numpy(np.float64),
        np.maximum(frame["size"].to_numpy(np.float64), 10.0**-instrument.size_precision),
        frame["side"].to_numpy() > 0,
        ids,
        index_ns(frame.index),
    )


def to_quote_ticks(frame: pd.DataFrame, instrument: Instrument) -> list[QuoteTick]:
    return quote_ticks_from_arrays(
        instrument,
        frame["bid"].to_numpy(np.float64),
        frame["ask"].to_numpy(np.float64),
        frame["bid_size"].to_numpy(np.float64),
        frame["ask_size"].to_numpy(np.float64),
        index_ns(frame.index),
    )
