"""Import real market-data files into the canonical frames of :mod:`lbml.data.frames`.

One entry point, :func:`load_file`, detects the format from the file's content (compression and
container by magic bytes, then the header or the shape of the first line) and returns an
:class:`ImportedFile`. Supported formats (``ImportedFile.format``):

==========================  =======  ==========================================================
format                      kind     source
==========================  =======  ==========================================================
``binance_klines``          bars     data.binance.vision spot/futures klines, 12 columns, with or
                                     without header, ms or µs timestamps
``ohlcv_csv``               bars     ``<time>,open,high,low,close,volume`` with a header; time is
                                     the bar *open* time, epoch (s/ms/µs/ns) or ISO-8601
``binance_trades``          trades   data.binance.vision ``trades`` (``id,price,qty,quote_qty,time,
                                     is_buyer_maker[,is_best_match]``), with or without header
``binance_aggtrades``       trades   data.binance.vision ``aggTrades`` (``agg_trade_id,price,
                                     quantity,first_trade_id,last_trade_id,transact_time,
                                     is_buyer_maker[,is_best_match]``), with or without header
``tardis_trades``           trades   Tardis.dev ``trades`` CSV
``tardis_quotes``           quotes   Tardis.dev ``quotes`` CSV
``ccxt_trades``             trades   ccxt/freqtrade public trades (``timestamp,side,price,amount``)
``funding_csv``             funding  ``funding_time,symbol,funding_rate`` or data.binance.vision
                                     ``calc_time,funding_interval_hours,last_funding_rate``
``freqtrade_json``          bars     freqtrade candles, JSON list of ``[ts_ms,o,h,l,c,v]``
``freqtrade_feather``       bars     freqtrade candles, feather ``date,open,high,low,close,volume``
``freqtrade_funding``       funding  freqtrade ``*-funding_rate.feather`` (rate in ``open``)
``parquet_trades``          trades   parquet/feather trades (e.g. nautilus test data)
``parquet_quotes``          quotes   parquet/feather top-of-book quotes
``parquet_bars``            bars     parquet OHLCV candles
``tardis_book_snapshot``    depth    Tardis.dev ``book_snapshot_N`` CSV (+ quotes)
``binance_depth_csv``       depth    Binance depth CSV (``snap``/``set`` rows; + quotes)
``binance_capture``         depth    raw Binance websocket capture (``<recv ns> <JSON>`` lines,
                                     hftbacktest layout; + quotes and trades)
==========================  =======  ==========================================================

Each format family is a module of :mod:`lbml.data.formats`; this module holds only the detector
registry (``TEXT_FORMATS``, ``CSV_LAYOUTS``, ``TABLE_RECOGNIZERS``, each tried in order, the first
match wins) and the two entry points, :func:`load_file` and :func:`load_depth`. The helpers every
family parses with are in :mod:`lbml.data.parsing`. Files holding several streams (order books)
put the others in ``ImportedFile.streams`` (a ``kind`` argument selects one of them as the frame).

CSV files may be plain, gzip-compressed or a zip archive holding one CSV (as data.binance.vision
ships them). Epoch timestamps are converted per value by magnitude (s, ms, µs or ns), so files
from before and after data.binance.vision's 2025 switch to microseconds load alike.

Rows are returned in file order: nothing is sorted, deduplicated or dropped, so that
:mod:`lbml.data.validate` can report what is wrong with the file. Every user-caused problem
raises :class:`~lbml.errors.DataError` with a one-line message naming the file and, for text
files, the line number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lbml.data.formats import binance, freqtrade_json, orderbook, tables
from lbml.data.parsing import (
    CsvLayout,
    ImportedFile,
    Locator,
    Parsed,
    Source,
    TableBuilder,
    clip,
    infer_symbol,
    read_columnar,
    read_csv,
)
from lbml.errors import DataError

KINDS = ("bars", "trades", "quotes", "funding", "depth")


# --------------------------------------------------------------------------------------------
# The detector registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFormat:
    """A text format recognised by its first characters, parsed whole."""

    family: str
    matches: Callable[[str], bool]
    parse: Callable[[Source, str, str | None, int | None], Parsed]  # source, head text, kind hint, bar minutes


TEXT_FORMATS: tuple[TextFormat, ...] = (
    TextFormat("order-book capture", orderbook.is_capture,
               lambda source, text, kind, minutes: orderbook.parse_capture([source])),
    TextFormat("freqtrade JSON", freqtrade_json.is_json,
               lambda source, text, kind, minutes: freqtrade_json.parse_json(source, minutes)),
    TextFormat("CSV", lambda text: True, lambda source, text, kind, minutes: _parse_csv(source, text, kind, minutes)),
)
# CSV first line → layout: Binance's positional layouts (and headed klines), else a header row.
CSV_LAYOUTS: tuple[Callable[[list[str]], CsvLayout | None], ...] = (binance.detect_csv, tables.detect_csv)
# Named columns → builder; order matters (an order-book table first, the catch-all candles last).
TableRecognizer = Callable[[Source, set[str], list[str], str, str | None, int | None], TableBuilder | None]
TABLE_RECOGNIZERS: tuple[TableRecognizer, ...] = (
    orderbook.recognize_table, binance.recognize_table, tables.recognize_table,
)


def load_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    kind: str | None = None,
    bar_minutes: int | None = None,
) -> ImportedFile:
    """Load a market-data file, detecting its format.

    Parameters
    ----------
    path : str | pathlib.Path
        File to read (``.csv``, ``.csv.gz``, ``.zip``, ``.json[.gz]``, ``.feather``,
        ``.parquet``); the format is detected from the content, not the name.
    symbol : str | None
        Symbol to report; inferred from the file name (or a symbol column) when None.
    kind : str | None
        Expected kind. The file must contain this kind of data; ``"funding"`` also selects the
        funding interpretation of a freqtrade ``*-funding_rate.feather`` candle file.
    bar_minutes : int | None
        Bar length for bar files; inferred from the spacing of the timestamps when None.

    Returns
    -------
    ImportedFile
        The canonical frame with its kind, symbol, bar length and detected format.

    Raises
    ------
    DataError
        If the file is missing, empty, of an unknown format or malformed. The message is one
        line naming the file and, where it applies, the line (or row) and column at fault.
    """
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise DataError(f"{path}: unknown data kind {kind!r} (expected one of {', '.join(KINDS)})")
    if bar_minutes is not None and bar_minutes <= 0:
        raise DataError(
            f"{path}: bar length must be a positive number of minutes, not {bar_minutes}"
        )
    source = Source.open(path)
    parsed = _parse(source, kind_hint=kind, bar_minutes=bar_minutes)
    if kind is not None and parsed.kind != kind and kind in parsed.streams:
        streams = {parsed.kind: parsed.frame, **parsed.streams}
        parsed = Parsed(kind, streams.pop(kind), parsed.format, symbol=parsed.symbol, streams=streams)
    if kind is not None and parsed.kind != kind:
        raise DataError(
            f"{path}: expected {kind} data but the file holds {parsed.kind} ({parsed.format})"
        )
    name_symbol = infer_symbol(path.name)
    if name_symbol is None and source.member_name:
        name_symbol = infer_symbol(source.member_name)
    return ImportedFile(
        kind=parsed.kind,
        frame=parsed.frame,
        symbol=symbol or name_symbol or parsed.symbol,
        path=path,
        bar_minutes=parsed.bar_minutes,
        format=parsed.format,
        streams=parsed.streams,
    )


def load_depth(paths: Sequence[str | Path]) -> list[ImportedFile]:
    """Load depth files, rebuilding books across files where one file continues another.

    Binance depth CSV files (a snapshot file and its update files) are replayed together, as are
    consecutive capture files (a session's first file holds the snapshot); every other file is
    loaded on its own.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Depth files in any supported order-book format.

    Returns
    -------
    list of ImportedFile
        One per group of files (``path`` is the group's first file), kind ``"depth"``.

    Raises
    ------
    DataError
        If a file is not order-book data, is malformed, or the files do not chain.
    """
    groups: dict[str, list[Source]] = {"binance_depth_csv": [], "binance_capture": []}
    singles: list[Path] = []
    for raw in paths:
        path = Path(raw)
        source = Source.open(path)
        fmt = orderbook.sniff_depth_format(source)
        if fmt in groups:
            groups[fmt].append(source)
        else:
            singles.append(path)
    results = []
    if groups["binance_depth_csv"]:
        rows = [orderbook.depth_csv_rows(s) for s in groups["binance_depth_csv"]]
        results.append(_imported(groups["binance_depth_csv"][0], orderbook.rebuild_depth_csv(rows)))
    if groups["binance_capture"]:
        results.append(_imported(groups["binance_capture"][0], orderbook.parse_capture(groups["binance_capture"])))
    for path in singles:
        imported = load_file(path)
        if imported.kind != "depth":
            raise DataError(
                f"{path}: expected order-book depth data but the file holds {imported.kind} ({imported.format})"
            )
        results.append(imported)
    return results


def _imported(source: Source, parsed: Parsed) -> ImportedFile:
    return ImportedFile(
        kind=parsed.kind,
        frame=parsed.frame,
        symbol=infer_symbol(source.path.name) or parsed.symbol,
        path=source.path,
        bar_minutes=None,
        format=parsed.format,
        streams=parsed.streams,
    )


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def _parse(source: Source, *, kind_hint: str | None, bar_minutes: int | None) -> Parsed:
    if source.container == "parquet":
        table = read_columnar(source, pd.read_parquet, "parquet")
        return _parse_table(source, table, "parquet", kind_hint, bar_minutes)
    if source.container == "feather":
        table = read_columnar(source, pd.read_feather, "feather")
        return _parse_table(source, table, "feather", kind_hint, bar_minutes)
    head = source.head()
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise DataError(f"{source.path}: file is empty")
    if b"\x00" in head:
        raise DataError(f"{source.path}: unrecognised format (binary content)")
    text_format = next(f for f in TEXT_FORMATS if f.matches(text))
    return text_format.parse(source, text, kind_hint, bar_minutes)


def _parse_csv(source: Source, head: str, kind_hint: str | None, bar_minutes: int | None) -> Parsed:
    first_line = next((line.rstrip("\r") for line in head.split("\n") if line.strip()), "")
    fields = [f.strip() for f in first_line.split(",")]
    layout = next((found for detect in CSV_LAYOUTS if (found := detect(fields)) is not None), None)
    if layout is None:
        raise DataError(f"{source.path}: unrecognised format (first line: {clip(first_line)})")
    if layout.format == "table":
        builder = _table_builder(source, list(layout.names), "csv", kind_hint, bar_minutes, first_line)
    else:
        positional = binance.POSITIONAL_BUILDERS[layout.format]
        builder = lambda t, loc: positional(source, t, loc, bar_minutes)  # noqa: E731
    locator = Locator(source, header=layout.header)
    return builder(read_csv(source, layout, locator), locator)


def _parse_table(
    source: Source, table: pd.DataFrame, container: str, kind_hint: str | None, bar_minutes: int | None
) -> Parsed:
    """Classify a parquet/feather table by its column names and build the canonical frame."""
    builder = _table_builder(source, list(table.columns), container, kind_hint, bar_minutes, None)
    return builder(table, Locator(source, header=False, text=False))


def _table_builder(
    source: Source,
    columns: list[str],
    container: str,
    kind_hint: str | None,
    bar_minutes: int | None,
    first_line: str | None,
) -> TableBuilder:
    """Pick the builder for a table with named columns; raise if the columns are not known."""
    names = set(columns)
    for recognize in TABLE_RECOGNIZERS:
        builder = recognize(source, names, columns, container, kind_hint, bar_minutes)
        if builder is not None:
            return builder
    if first_line is not None:
        raise DataError(f"{source.path}: unrecognised format (first line: {clip(first_line)})")
    raise DataError(f"{source.path}: unrecognised format (columns: {clip(','.join(columns))})")
