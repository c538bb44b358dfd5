"""data.binance.vision CSV layouts: klines, trades and aggTrades, with or without a header.

Headerless files are recognised by the shape of their first line (field count, where the booleans
sit); the six-number ``open_time,o,h,l,c,v`` line without a header is recognised here as well.
Headed trades and aggTrades files reach :func:`recognize_table` through the named-table rules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from lbml.data.frames import BAR_COLUMNS
from lbml.data.parsing import (
    HEADER_NAME,
    NS_PER_MINUTE,
    CsvLayout,
    Locator,
    Parsed,
    Source,
    TableBuilder,
    bar_length_ns,
    booleans,
    build_bars,
    build_trades,
    floats,
    is_bool,
    is_number,
    normalise_name,
    ohlcv_columns,
    side_from_buyer_maker,
    times,
)

KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
TRADE_COLUMNS_BINANCE = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
AGGTRADE_COLUMNS = (
    "agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
    "is_buyer_maker",
)  # fmt: skip


def detect_csv(fields: list[str]) -> CsvLayout | None:
    """The Binance layout of a CSV whose first non-blank line splits into ``fields``, or None."""
    if not fields or not fields[0]:
        return None
    if not is_number(fields[0]):
        names = tuple(normalise_name(f) for f in fields)
        if not all(HEADER_NAME.match(n) for n in names):
            return None
        if len(fields) == 12 and names[0] == "open_time" and "close_time" in names:
            return CsvLayout("binance_klines", KLINE_COLUMNS, header=True)
        return None
    n = len(fields)
    if n == 12 and all(is_number(f) for f in fields):
        return CsvLayout("binance_klines", KLINE_COLUMNS, header=False)
    if n in (6, 7) and is_bool(fields[5]):
        names = TRADE_COLUMNS_BINANCE + (("is_best_match",) if n == 7 else ())
        return CsvLayout("binance_trades", names, header=False)
    if n in (7, 8) and is_bool(fields[6]):
        names = AGGTRADE_COLUMNS + (("is_best_match",) if n == 8 else ())
        return CsvLayout("binance_aggtrades", names, header=False)
    if n == 6 and all(is_number(f) for f in fields):
        return CsvLayout("ohlcv_csv", ("open_time", *BAR_COLUMNS), header=False)
    return None


def _build_klines(
    source: Source, table: pd.DataFrame, locator: Locator, bar_minutes: int | None
) -> Parsed:
    for col in KLINE_COLUMNS:  # every column must be numeric, or the row is corrupt
        if col not in ("open_time", "close_time"):
            floats(table, col, source, locator)
    open_ns = times(table, "open_time", source, locator)
    close_ns = times(table, "close_time", source, locator)
    if bar_minutes is None:
        # close_time is the last unit (1 ms or 1 µs) of the bar.
        unit_ns = np.where(
            np.abs(table["close_time"].to_numpy(dtype=np.float64)) < 1e14, 1_000_000, 1_000
        )
        bar_ns = int(np.median(close_ns + unit_ns - open_ns))
        bar_ns = round(bar_ns / 1e9) * 1_000_000_000  # whole seconds
    else:
        bar_ns = bar_minutes * NS_PER_MINUTE
    columns = ohlcv_columns(table, source, locator)
    columns["taker_buy_volume"] = floats(table, "taker_buy_volume", source, locator)
    return build_bars(open_ns, bar_ns, columns, source, "binance_klines")


def _build_simple_ohlcv(
    source: Source, table: pd.DataFrame, locator: Locator, bar_minutes: int | None
) -> Parsed:
    columns = ohlcv_columns(table, source, locator)
    open_ns = times(table, "open_time", source, locator)
    return build_bars(
        open_ns, bar_length_ns(open_ns, source, bar_minutes), columns, source, "ohlcv_csv"
    )


def _build_binance_trades(
    source: Source, table: pd.DataFrame, locator: Locator, _: int | None
) -> Parsed:
    price = floats(table, "price", source, locator)
    size = floats(table, "qty", source, locator)
    side = side_from_buyer_maker(booleans(table, "is_buyer_maker", source, locator))
    return build_trades(times(table, "time", source, locator), price, size, side, "binance_trades")


def _build_binance_aggtrades(
    source: Source, table: pd.DataFrame, locator: Locator, _: int | None
) -> Parsed:
    price = floats(table, "price", source, locator)
    size = floats(table, "quantity", source, locator)
    side = side_from_buyer_maker(booleans(table, "is_buyer_maker", source, locator))
    return build_trades(
        times(table, "transact_time", source, locator), price, size, side, "binance_aggtrades"
    )


PositionalBuilder = Callable[[Source, pd.DataFrame, Locator, int | None], Parsed]
POSITIONAL_BUILDERS: dict[str, PositionalBuilder] = {
    "binance_klines": _build_klines,
    "ohlcv_csv": _build_simple_ohlcv,
    "binance_trades": _build_binance_trades,
    "binance_aggtrades": _build_binance_aggtrades,
}


def recognize_table(
    source: Source, names: set[str], columns: list[str], container: str, kind_hint: str | None,
    bar_minutes: int | None,
) -> TableBuilder | None:
    """The builder for a headed Binance trades or aggTrades table, or None."""
    if {"agg_trade_id", "transact_time", "is_buyer_maker"} <= names:
        return lambda t, loc: _build_binance_aggtrades(
            source, t.rename(columns={"qty": "quantity"}), loc, None
        )
    if {"price", "qty", "time", "is_buyer_maker"} <= names:
        return lambda t, loc: _build_binance_trades(source, t, loc, None)
    return None
