"""Tables with named columns: a CSV with a header, parquet or feather.

The columns decide the kind: Tardis trades and quotes, funding (``funding_time,symbol,
funding_rate`` or data.binance.vision's ``calc_time,funding_interval_hours,last_funding_rate``),
ccxt/freqtrade trades (``timestamp,side,price,amount``), quotes and trades under common names,
and candles (``<time>,open,high,low,close,volume``; freqtrade's feather candles, and its
``*-funding_rate.feather`` whose rate sits in ``open``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lbml.data.frames import BAR_COLUMNS
from lbml.data.parsing import (
    HEADER_NAME,
    CsvLayout,
    Locator,
    Parsed,
    Source,
    TableBuilder,
    bar_length_ns,
    booleans,
    build_bars,
    build_trades,
    first_of,
    floats,
    is_number,
    normalise_name,
    ohlcv_columns,
    raise_bad_value,
    side_from_buyer_maker,
    symbol_column,
    times,
    ts_index,
)
from lbml.errors import DataError

TIME_ALIASES = ("open_time", "timestamp", "date", "datetime", "time", "ts", "open_timestamp")
FUNDING_TIME_ALIASES = ("funding_time", "fundingtime", "calc_time", "timestamp", "date", "time")
FUNDING_RATE_ALIASES = ("funding_rate", "fundingrate", "last_funding_rate", "rate")


def detect_csv(fields: list[str]) -> CsvLayout | None:
    """A header row of column names (or pandas' unnamed index column first), or None."""
    if not fields or not fields[0]:
        if len(fields) > 1 and fields[0] == "" and not is_number(fields[1]):
            # A CSV written by pandas with its (unnamed) index column.
            names = tuple(normalise_name(f) or f"unnamed_{i}" for i, f in enumerate(fields))
            return CsvLayout("table", names, header=True)
        return None
    if is_number(fields[0]):
        return None
    names = tuple(normalise_name(f) for f in fields)
    if not all(HEADER_NAME.match(n) for n in names):
        return None  # not a CSV header (JSON lines, websocket captures, prose...)
    return CsvLayout("table", names, header=True)


def recognize_table(
    source: Source, names: set[str], columns: list[str], container: str, kind_hint: str | None,
    bar_minutes: int | None,
) -> TableBuilder | None:
    """The builder for a table these columns describe, or None."""
    if {"exchange", "timestamp", "side", "price", "amount"} <= names:
        return lambda t, loc: _build_side_trades(
            source, t, loc, "timestamp", "amount", "tardis_trades"
        )
    if {"timestamp", "ask_amount", "ask_price", "bid_price", "bid_amount"} <= names:
        renamed = {
            "bid_price": "bid",
            "ask_price": "ask",
            "bid_amount": "bid_size",
            "ask_amount": "ask_size",
        }
        return lambda t, loc: _build_quotes(source, t.rename(columns=renamed), loc, "tardis_quotes")
    rate_col = first_of(names, FUNDING_RATE_ALIASES)
    funding_time = first_of(names, FUNDING_TIME_ALIASES)
    if rate_col and funding_time and not set(BAR_COLUMNS) <= names:
        fmt = "funding_csv" if container == "csv" else f"{container}_funding"
        return lambda t, loc: _build_funding(source, t, loc, funding_time, rate_col, fmt)
    if {"timestamp", "side", "price", "amount"} <= names:
        return lambda t, loc: _build_side_trades(
            source, t, loc, "timestamp", "amount", "ccxt_trades"
        )
    time_col = first_of(names, TIME_ALIASES)
    if time_col and {"bid", "ask", "bid_size", "ask_size"} <= names:
        return lambda t, loc: _build_quotes(source, t, loc, f"{container}_quotes", time_col)
    if time_col and "price" in names and ({"quantity", "size", "qty"} & names):
        return lambda t, loc: _build_generic_trades(source, t, loc, time_col, container)
    if time_col and set(BAR_COLUMNS) <= names:
        if kind_hint == "funding" or (
            kind_hint is None and "funding_rate" in source.path.name.lower()
        ):
            return lambda t, loc: _build_funding(
                source, t, loc, time_col, "open", "freqtrade_funding"
            )
        fmt = {"csv": "ohlcv_csv", "feather": "freqtrade_feather"}.get(
            container, f"{container}_bars"
        )
        return lambda t, loc: _build_named_ohlcv(source, t, loc, time_col, bar_minutes, fmt)
    return None


def _build_named_ohlcv(
    source: Source,
    table: pd.DataFrame,
    loc: Locator,
    time_col: str,
    bar_minutes: int | None,
    fmt: str,
) -> Parsed:
    columns = ohlcv_columns(table, source, loc)
    if "taker_buy_volume" in table.columns:
        columns["taker_buy_volume"] = floats(table, "taker_buy_volume", source, loc)
    time_ns = times(table, time_col, source, loc)
    bar_ns = bar_length_ns(time_ns, source, bar_minutes)
    if time_col == "ts":  # a frame saved by lbml itself: already indexed by close time
        time_ns = time_ns - bar_ns
    return build_bars(time_ns, bar_ns, columns, source, fmt)


def _build_side_trades(
    source: Source, table: pd.DataFrame, loc: Locator, time_col: str, size_col: str, fmt: str
) -> Parsed:
    price = floats(table, "price", source, loc)
    size = floats(table, size_col, source, loc)
    side = _side_from_text(table, "side", source, loc)
    symbol = symbol_column(table)
    parsed = build_trades(times(table, time_col, source, loc), price, size, side, fmt)
    return Parsed(parsed.kind, parsed.frame, fmt, symbol=symbol)


def _side_from_text(table: pd.DataFrame, col: str, source: Source, loc: Locator) -> np.ndarray:
    """Aggressor side from ``buy``/``sell`` (also ``BUYER``/``SELLER``, ``b``/``s``, ±1)."""
    text = table[col].astype(str).str.strip().str.lower()
    buy = text.isin(("buy", "buyer", "1", "1.0")).to_numpy()
    sell = text.isin(("sell", "seller", "-1", "2", "-1.0")).to_numpy()
    bad = ~(buy | sell)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise_bad_value(source, loc, col, row, table[col].iloc[row], "a trade side (buy/sell)")
    return np.where(buy, 1, -1).astype(np.int8)


def _build_generic_trades(
    source: Source, table: pd.DataFrame, loc: Locator, time_col: str, container: str
) -> Parsed:
    names = set(table.columns)
    size_col = first_of(names, ("quantity", "size", "qty"))
    assert size_col is not None
    price = floats(table, "price", source, loc)
    size = floats(table, size_col, source, loc)
    maker_col = first_of(names, ("buyer_maker", "is_buyer_maker"))
    if maker_col is not None:
        side = side_from_buyer_maker(booleans(table, maker_col, source, loc))
    elif "aggressor_side" in names:
        side = _side_from_text(table, "aggressor_side", source, loc)
    elif "side" in names:
        side = _side_from_text(table, "side", source, loc)
    else:
        raise DataError(
            f"{source.path}: trades have no aggressor side column (buyer_maker or side)"
        )
    parsed = build_trades(times(table, time_col, source, loc), price, size, side, f"{container}_trades")
    return Parsed(parsed.kind, parsed.frame, parsed.format, symbol=symbol_column(table))


def _build_quotes(
    source: Source, table: pd.DataFrame, loc: Locator, fmt: str, time_col: str = "timestamp"
) -> Parsed:
    columns = {c: floats(table, c, source, loc) for c in ("bid", "ask", "bid_size", "ask_size")}
    frame = pd.DataFrame(columns, index=ts_index(times(table, time_col, source, loc)))
    return Parsed("quotes", frame, fmt, symbol=symbol_column(table))


def _build_funding(
    source: Source, table: pd.DataFrame, loc: Locator, time_col: str, rate_col: str, fmt: str
) -> Parsed:
    rate = floats(table, rate_col, source, loc)
    frame = pd.DataFrame({"rate": rate}, index=ts_index(times(table, time_col, source, loc)))
    return Parsed("funding", frame, fmt, symbol=symbol_column(table))
