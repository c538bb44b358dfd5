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

Order-book files are handled by :mod:`lbml.data.orderbook`; files holding several streams put
the others in ``ImportedFile.streams`` (a ``kind`` argument selects one of them as the frame).

CSV files may be plain, gzip-compressed or a zip archive holding one CSV (as data.binance.vision
ships them). Epoch timestamps are converted per value by magnitude (s, ms, µs or ns), so files
from before and after data.binance.vision's 2025 switch to microseconds load alike.

Rows are returned in file order: nothing is sorted, deduplicated or dropped, so that
:mod:`lbml.data.validate` can report what is wrong with the file. Every user-caused problem
raises :class:`~lbml.errors.DataError` with a one-line message naming the file and, for text
files, the line number.
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from lbml.data import orderbook
from lbml.data.frames import BAR_COLUMNS
from lbml.errors import DataError

KINDS = ("bars", "trades", "quotes", "funding", "depth")

_NS_PER_MINUTE = 60 * 1_000_000_000
_SNIFF_BYTES = 64 * 1024
_MIN_EPOCH_SECONDS = 1_000_000_000  # 2001-09-09: anything smaller is not a market-data timestamp
_NAN_LITERALS = frozenset({"nan", "+nan", "-nan"})
_TRUE = frozenset({"true", "1", "t", "yes", "y"})
_FALSE = frozenset({"false", "0", "f", "no", "n"})

# Positional column names of the headerless data.binance.vision files.
KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
TRADE_COLUMNS_BINANCE = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
AGGTRADE_COLUMNS = (
    "agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
    "is_buyer_maker",
)  # fmt: skip

_TIME_ALIASES = ("open_time", "timestamp", "date", "datetime", "time", "ts", "open_timestamp")
_FUNDING_TIME_ALIASES = ("funding_time", "fundingtime", "calc_time", "timestamp", "date", "time")
_FUNDING_RATE_ALIASES = ("funding_rate", "fundingrate", "last_funding_rate", "rate")
_OHLCV = BAR_COLUMNS
_QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR")
_INTERVAL_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
_HEADER_NAME = re.compile(r"^[a-z_][a-z0-9_\[\]()%-]*$")
_DATA_SUFFIXES = (".csv", ".gz", ".zip", ".json", ".feather", ".parquet", ".arrow", ".txt")


@dataclass(frozen=True)
class ImportedFile:
    """One imported data file.

    Attributes
    ----------
    kind : str
        ``"bars"``, ``"trades"``, ``"quotes"`` or ``"funding"``.
    frame : pandas.DataFrame
        Canonical frame (see :mod:`lbml.data.frames`), rows in file order.
    symbol : str | None
        Symbol inferred from the file name (``BTCUSDT``), else from a symbol column, else None.
    path : pathlib.Path
        The file that was read.
    bar_minutes : int | None
        Bar length in minutes for bars, None otherwise.
    format : str
        Short name of the detected format (see the module docstring).
    streams : dict[str, pandas.DataFrame]
        Other canonical frames the same file holds, by kind (an order-book file's quotes, a
        websocket capture's quotes and trades); empty for single-stream files.
    """

    kind: str
    frame: pd.DataFrame
    symbol: str | None
    path: Path
    bar_minutes: int | None
    format: str
    streams: dict[str, pd.DataFrame] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


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
    source = _Source.open(path)
    parsed = _parse(source, kind_hint=kind, bar_minutes=bar_minutes)
    if kind is not None and parsed.kind != kind and kind in parsed.streams:
        streams = {parsed.kind: parsed.frame, **parsed.streams}
        parsed = _Parsed(kind, streams.pop(kind), parsed.format, symbol=parsed.symbol, streams=streams)
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


def infer_symbol(file_name: str) -> str | None:
    """Guess the symbol from a data file name.

    Parameters
    ----------
    file_name : str
        A file name such as ``BTCUSDT-1m-2021-04.zip``, ``BTC_USDT-1m.json``,
        ``BTC_USDT_USDT-1h-funding_rate.feather`` or ``ftx_btc-perp-2022_1m.csv``.

    Returns
    -------
    str | None
        Upper-case symbol (``BTCUSDT``, ``BTC-PERP``), or None when nothing looks like one.
    """
    stem = _strip_suffixes(file_name)
    freqtrade = re.match(r"^([A-Za-z0-9]+)_([A-Za-z0-9]+)(?:_[A-Za-z0-9]+)?-\d+[smhdwM]\b", stem)
    if freqtrade:
        return (freqtrade.group(1) + freqtrade.group(2)).upper()
    for token in re.split(r"[-_.\s]+", stem):
        if _looks_like_pair(token):
            return token.upper()
    perp = re.search(r"(?:^|[-_.\s])([A-Za-z0-9]{2,10})-perp(?:$|[-_.\s])", stem, re.IGNORECASE)
    if perp:
        return f"{perp.group(1).upper()}-PERP"
    return None


def _strip_suffixes(file_name: str) -> str:
    stem = file_name
    while True:
        lowered = stem.lower()
        suffix = next((s for s in _DATA_SUFFIXES if lowered.endswith(s)), None)
        if suffix is None:
            return stem
        stem = stem[: -len(suffix)]


def _looks_like_pair(token: str) -> bool:
    if not token.isalnum() or not token[:1].isalpha():
        return False
    upper = token.upper()
    return any(upper.endswith(q) and len(upper) >= len(q) + 2 for q in _QUOTE_ASSETS)


def _interval_from_name(file_name: str) -> int | None:
    """Bar length in minutes from a ``-1m-``/``_5m``/``-1h`` token in the file name."""
    match = re.search(r"(?:^|[-_.])(\d+)([mhdw])(?:$|[-_.])", _strip_suffixes(file_name))
    if not match:
        return None
    return int(match.group(1)) * _INTERVAL_MINUTES[match.group(2)]


# --------------------------------------------------------------------------------------------
# Opening files: compression / container detection
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """An opened data file: its container type and a way to (re)read its decompressed bytes."""

    path: Path
    container: str  # "text", "parquet", "feather"
    compression: str | None  # None, "gzip", "zip"
    member_name: str | None = None
    _raw_lines: list[str] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path) -> _Source:
        if not path.exists():
            raise DataError(f"{path}: file not found")
        if path.is_dir():
            raise DataError(f"{path}: is a directory, not a data file")
        try:
            with path.open("rb") as fh:
                magic = fh.read(8)
        except OSError as exc:
            raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
        if not magic:
            raise DataError(f"{path}: file is empty")
        if magic.startswith(b"PAR1"):
            return cls(path, "parquet", None)
        if magic.startswith(b"ARROW1") or magic.startswith(b"FEA1"):
            return cls(path, "feather", None)
        if magic.startswith(b"\x1f\x8b"):
            return cls(path, "text", "gzip")
        if magic.startswith(b"PK"):
            return cls(path, "text", "zip", member_name=_zip_member(path))
        return cls(path, "text", None)

    @contextmanager
    def binary(self) -> Iterator[IO[bytes]]:
        """Yield a binary handle on the decompressed content."""
        try:
            if self.compression == "gzip":
                with gzip.open(self.path, "rb") as fh:
                    yield fh
            elif self.compression == "zip":
                with (
                    zipfile.ZipFile(self.path) as archive,
                    archive.open(str(self.member_name)) as fh,
                ):
                    yield fh
            else:
                with self.path.open("rb") as fh:
                    yield fh
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{self.path}: corrupt or unreadable {self.compression or 'file'} ({exc})"
            ) from None

    def head(self) -> bytes:
        with self.binary() as fh:
            return fh.read(_SNIFF_BYTES)

    def read_bytes(self) -> bytes:
        with self.binary() as fh:
            return fh.read()

    def raw_lines(self) -> list[str]:
        """All lines of the decompressed text (slow path, used only to diagnose errors)."""
        if self._raw_lines is None:
            text = self.read_bytes().decode("utf-8-sig", errors="replace")
            self._raw_lines = [line.rstrip("\r") for line in text.split("\n")]
        return self._raw_lines


def _zip_member(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a valid zip archive ({exc})") from None
    if len(members) != 1:
        raise DataError(f"{path}: zip archive holds {len(members)} files; expected exactly one CSV")
    return members[0]


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    kind: str
    frame: pd.DataFrame
    format: str
    bar_minutes: int | None = None
    symbol: str | None = None
    streams: dict[str, pd.DataFrame] = field(default_factory=dict)


def _parse(source: _Source, *, kind_hint: str | None, bar_minutes: int | None) -> _Parsed:
    if source.container == "parquet":
        table = _read_columnar(source, pd.read_parquet, "parquet")
        return _parse_table(source, table, "parquet", kind_hint, bar_minutes)
    if source.container == "feather":
        table = _read_columnar(source, pd.read_feather, "feather")
        return _parse_table(source, table, "feather", kind_hint, bar_minutes)
    head = source.head()
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise DataError(f"{source.path}: file is empty")
    if b"\x00" in head:
        raise DataError(f"{source.path}: unrecognised format (binary content)")
    if orderbook.CAPTURE_LINE.match(text.lstrip()):
        return orderbook.parse_capture([source])
    if text.lstrip()[:1] in "[{":
        return _parse_json(source, bar_minutes)
    return _parse_csv(source, text, kind_hint, bar_minutes)


def _read_columnar(source: _Source, reader: Callable[..., pd.DataFrame], name: str) -> pd.DataFrame:
    try:
        table = reader(source.path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataError(f"{source.path}: not a readable {name} file ({_one_line(exc)})") from None
    if len(table) == 0:
        raise DataError(f"{source.path}: file has no data rows")
    table = table.reset_index(drop=isinstance(table.index, pd.RangeIndex))
    table.columns = [_normalise_name(c) for c in table.columns]
    return table


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _normalise_name(name: object) -> str:
    return re.sub(r"[\s.]+", "_", str(name).strip().strip('"').strip("'").lower())


# --------------------------------------------------------------------------------------------
# Locating rows for error messages
# --------------------------------------------------------------------------------------------


@dataclass
class _Locator:
    """Maps a data row (0-based) to a human position: ``line N`` for text, ``row N`` otherwise."""

    source: _Source
    header: bool
    text: bool = True
    _lines: np.ndarray | None = None
    _raw: pd.DataFrame | None = None

    def raw_column(self, names: list[str], col: str) -> pd.Series:
        """One column exactly as written in the file (slow path, for error messages)."""
        if self._raw is None:
            with self.source.binary() as fh:
                self._raw = pd.read_csv(
                    fh,
                    header=0 if self.header else None,
                    names=names,
                    index_col=False,
                    dtype=str,
                    keep_default_na=False,
                    encoding="utf-8-sig",
                )
        return self._raw[col]

    def where(self, row: int) -> str:
        if not self.text:
            return f"row {row + 1}"
        lines = self.data_line_numbers()
        if row < len(lines):
            return f"line {int(lines[row])}"
        return f"line {row + 1 + int(self.header)}"

    def data_line_numbers(self) -> np.ndarray:
        """1-based line numbers of the data lines (blank lines are skipped, as pandas does)."""
        if self._lines is None:
            raw = self.source.raw_lines()
            numbers = np.flatnonzero(np.array([bool(line) for line in raw], dtype=bool)) + 1
            self._lines = numbers[1:] if self.header else numbers
        return self._lines


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    format: str
    names: tuple[str, ...]  # column names as pandas will see them
    header: bool


def _parse_csv(
    source: _Source, head: str, kind_hint: str | None, bar_minutes: int | None
) -> _Parsed:
    first_line = next((line.rstrip("\r") for line in head.split("\n") if line.strip()), "")
    fields = [f.strip() for f in first_line.split(",")]
    layout = _detect_csv_layout(fields)
    if layout is None:
        raise DataError(f"{source.path}: unrecognised format (first line: {_clip(first_line)})")
    if layout.format == "table":
        builder = _table_builder(
            source, list(layout.names), "csv", kind_hint, bar_minutes, first_line
        )
    else:
        positional = _POSITIONAL_BUILDERS[layout.format]
        builder = lambda t, loc: positional(source, t, loc, bar_minutes)  # noqa: E731
    locator = _Locator(source, header=layout.header)
    return builder(_read_csv(source, layout, locator), locator)


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_bool(text: str) -> bool:
    return text.lower() in ("true", "false")


def _detect_csv_layout(fields: list[str]) -> _CsvLayout | None:
    """Decide the CSV layout from the first non-blank line."""
    if not fields or not fields[0]:
        if len(fields) > 1 and fields[0] == "" and not _is_number(fields[1]):
            # A CSV written by pandas with its (unnamed) index column.
            names = tuple(_normalise_name(f) or f"unnamed_{i}" for i, f in enumerate(fields))
            return _CsvLayout("table", names, header=True)
        return None
    if not _is_number(fields[0]):
        names = tuple(_normalise_name(f) for f in fields)
        if not all(_HEADER_NAME.match(n) for n in names):
            return None  # not a CSV header (JSON lines, websocket captures, prose...)
        if len(fields) == 12 and names[0] == "open_time" and "close_time" in names:
            return _CsvLayout("binance_klines", KLINE_COLUMNS, header=True)
        return _CsvLayout("table", names, header=True)
    n = len(fields)
    if n == 12 and all(_is_number(f) for f in fields):
        return _CsvLayout("binance_klines", KLINE_COLUMNS, header=False)
    if n in (6, 7) and _is_bool(fields[5]):
        names = TRADE_COLUMNS_BINANCE + (("is_best_match",) if n == 7 else ())
        return _CsvLayout("binance_trades", names, header=False)
    if n in (7, 8) and _is_bool(fields[6]):
        names = AGGTRADE_COLUMNS + (("is_best_match",) if n == 8 else ())
        return _CsvLayout("binance_aggtrades", names, header=False)
    if n == 6 and all(_is_number(f) for f in fields):
        return _CsvLayout("ohlcv_csv", ("open_time", *_OHLCV), header=False)
    return None


def _read_csv(source: _Source, layout: _CsvLayout, locator: _Locator) -> pd.DataFrame:
    """Read the whole CSV with pandas' C parser; diagnose field-count problems on failure."""
    try:
        with source.binary() as fh:
            table = pd.read_csv(
                fh,
                header=0 if layout.header else None,
                names=list(layout.names),
                index_col=False,
                encoding="utf-8-sig",
                low_memory=False,
                skipinitialspace=True,
            )
    except pd.errors.ParserError as exc:
        _check_field_counts(source, layout, locator)
        raise DataError(f"{source.path}: cannot parse CSV ({_one_line(exc)})") from None
    except UnicodeDecodeError:
        raise DataError(f"{source.path}: not a UTF-8 text file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{source.path}: file is empty") from None
    except ValueError as exc:  # e.g. duplicate column names in the header
        raise DataError(f"{source.path}: cannot parse CSV ({_one_line(exc)})") from None
    if len(table) == 0:
        raise DataError(f"{source.path}: file has a header but no data rows")
    if table.isna().to_numpy().any():
        # Short rows are padded with NaN by pandas: report them as what they are.
        _check_field_counts(source, layout, locator)
    return table


def _check_field_counts(source: _Source, layout: _CsvLayout, locator: _Locator) -> None:
    """Raise on the first data line whose field count differs from the layout's."""
    raw = source.raw_lines()
    numbers = locator.data_line_numbers()
    if len(numbers) == 0:
        return
    lines = pd.Series([raw[i - 1] for i in numbers], dtype=object)
    counts = lines.str.count(",").to_numpy() + 1
    bad = np.flatnonzero(counts != len(layout.names))
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{source.path}: expected {len(layout.names)} columns, found {int(counts[row])} "
            f"on line {int(numbers[row])}"
        )


# --------------------------------------------------------------------------------------------
# Column conversion (fast path: already numeric; slow path: find the offending row)
# --------------------------------------------------------------------------------------------


def _raise_bad_value(
    source: _Source, locator: _Locator, col: str, row: int, value: Any, what: str
) -> None:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    problem = "is empty" if not text.strip() else f"is not {what} ({_clip(text, 40)!r})"
    raise DataError(f"{source.path}: {locator.where(row)}: column '{col}' {problem}")


def _floats(table: pd.DataFrame, col: str, source: _Source, locator: _Locator) -> np.ndarray:
    """Column as float64; literal NaN/inf are kept (validation reports them)."""
    values = table[col]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and (not locator.text or not values.isna().any()):
        return values.to_numpy(dtype=np.float64)
    numbers = pd.to_numeric(values.astype(object), errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any() and locator.text:
        raw = locator.raw_column(list(table.columns), col)
        bad &= ~raw.str.strip().str.lower().isin(_NAN_LITERALS).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            _raise_bad_value(source, locator, col, row, raw.iloc[row], "a number")
    elif bad.any():
        nan_like = values.map(
            lambda v: v is None or isinstance(v, float) or str(v).strip().lower() in _NAN_LITERALS
        )
        bad &= ~nan_like.to_numpy(dtype=bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            _raise_bad_value(source, locator, col, row, values.iloc[row], "a number")
    return numbers.to_numpy(dtype=np.float64)


def _booleans(table: pd.DataFrame, col: str, source: _Source, locator: _Locator) -> np.ndarray:
    values = table[col]
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    is_true = text.isin(_TRUE).to_numpy()
    is_false = text.isin(_FALSE).to_numpy()
    bad = ~(is_true | is_false)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        _raise_bad_value(source, locator, col, row, values.iloc[row], "true/false")
    return is_true


def _epoch_to_ns(values: np.ndarray) -> np.ndarray:
    """Epoch numbers in s, ms, µs or ns (decided per value by magnitude) to int64 ns."""
    magnitude = np.abs(values)
    factor = np.select(
        [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1e9, 1e6, 1e3], default=1.0
    )
    if values.dtype.kind in "iu":
        return values.astype(np.int64) * factor.astype(np.int64)
    return np.round(values * factor).astype(np.int64)


def _times(table: pd.DataFrame, col: str, source: _Source, locator: _Locator) -> np.ndarray:
    """Timestamp column (epoch number, ISO string or datetime) as int64 UTC nanoseconds."""
    values = table[col]
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        return _datetimes_to_ns(values, col, source, locator)
    if pd.api.types.is_integer_dtype(values):
        numbers = values.to_numpy()
    else:
        coerced = pd.to_numeric(values, errors="coerce")
        if coerced.notna().mean() < 0.5:
            return _iso_to_ns(values, col, source, locator)
        numbers = _floats(table, col, source, locator)
        if np.isnan(numbers).any():
            _raise_bad_value(
                source, locator, col, int(np.flatnonzero(np.isnan(numbers))[0]), "", ""
            )
        if np.all(numbers == np.floor(numbers)) and np.abs(numbers).max() < 2**62:
            numbers = numbers.astype(np.int64)
    implausible = np.abs(numbers) < _MIN_EPOCH_SECONDS
    if implausible.any():
        row = int(np.flatnonzero(implausible)[0])
        _raise_bad_value(source, locator, col, row, values.iloc[row], "a plausible epoch timestamp")
    return _epoch_to_ns(numbers)


def _iso_to_ns(values: pd.Series, col: str, source: _Source, locator: _Locator) -> np.ndarray:
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    return _datetimes_to_ns(parsed, col, source, locator, original=values)


def _datetimes_to_ns(
    parsed: pd.Series,
    col: str,
    source: _Source,
    locator: _Locator,
    original: pd.Series | None = None,
) -> np.ndarray:
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        shown = (original if original is not None else parsed).iloc[row]
        _raise_bad_value(source, locator, col, row, shown, "a valid timestamp")
    index = pd.DatetimeIndex(parsed)
    # Naive timestamps are taken as UTC.
    index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    return index.as_unit("ns").asi8


# --------------------------------------------------------------------------------------------
# Frame builders
# --------------------------------------------------------------------------------------------


def _index(ns: np.ndarray) -> pd.DatetimeIndex:
    values = np.asarray(ns, dtype=np.int64).view("datetime64[ns]")
    return pd.DatetimeIndex(values, name="ts").tz_localize("UTC")


def _bar_length_ns(open_ns: np.ndarray, source: _Source, bar_minutes: int | None) -> int:
    """Bar length: explicit, else the median positive spacing, else the file name's interval."""
    if bar_minutes is not None:
        return bar_minutes * _NS_PER_MINUTE
    steps = np.diff(open_ns)
    steps = steps[steps > 0]
    if len(steps):
        return int(np.median(steps))
    named = _interval_from_name(source.member_name or source.path.name)
    if named is None:
        raise DataError(f"{source.path}: cannot infer the bar length from a single timestamp")
    return named * _NS_PER_MINUTE


def _bar_minutes(bar_ns: int, source: _Source) -> int:
    if bar_ns % _NS_PER_MINUTE != 0 or bar_ns <= 0:
        seconds = bar_ns / 1e9
        raise DataError(f"{source.path}: bar length {seconds:g}s is not a whole number of minutes")
    return bar_ns // _NS_PER_MINUTE


def _bars(
    open_ns: np.ndarray, bar_ns: int, columns: dict[str, np.ndarray], source: _Source, fmt: str
) -> _Parsed:
    frame = pd.DataFrame(columns, index=_index(open_ns + bar_ns))
    return _Parsed("bars", frame, fmt, bar_minutes=_bar_minutes(bar_ns, source))


def _ohlcv_columns(
    table: pd.DataFrame, source: _Source, locator: _Locator
) -> dict[str, np.ndarray]:
    return {c: _floats(table, c, source, locator) for c in _OHLCV}


def _build_klines(
    source: _Source, table: pd.DataFrame, locator: _Locator, bar_minutes: int | None
) -> _Parsed:
    for col in KLINE_COLUMNS:  # every column must be numeric, or the row is corrupt
        if col not in ("open_time", "close_time"):
            _floats(table, col, source, locator)
    open_ns = _times(table, "open_time", source, locator)
    close_ns = _times(table, "close_time", source, locator)
    if bar_minutes is None:
        # close_time is the last unit (1 ms or 1 µs) of the bar.
        unit_ns = np.where(
            np.abs(table["close_time"].to_numpy(dtype=np.float64)) < 1e14, 1_000_000, 1_000
        )
        bar_ns = int(np.median(close_ns + unit_ns - open_ns))
        bar_ns = round(bar_ns / 1e9) * 1_000_000_000  # whole seconds
    else:
        bar_ns = bar_minutes * _NS_PER_MINUTE
    columns = _ohlcv_columns(table, source, locator)
    columns["taker_buy_volume"] = _floats(table, "taker_buy_volume", source, locator)
    return _bars(open_ns, bar_ns, columns, source, "binance_klines")


def _build_simple_ohlcv(
    source: _Source, table: pd.DataFrame, locator: _Locator, bar_minutes: int | None
) -> _Parsed:
    columns = _ohlcv_columns(table, source, locator)
    open_ns = _times(table, "open_time", source, locator)
    return _bars(
        open_ns, _bar_length_ns(open_ns, source, bar_minutes), columns, source, "ohlcv_csv"
    )


def _trades(
    time_ns: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray, fmt: str
) -> _Parsed:
    frame = pd.DataFrame(
        {"price": price, "size": size, "side": side.astype(np.int8)}, index=_index(time_ns)
    )
    return _Parsed("trades", frame, fmt)


def _side_from_buyer_maker(buyer_maker: np.ndarray) -> np.ndarray:
    """Buyer was the maker -> the seller hit the bid -> seller aggressor (-1)."""
    return np.where(buyer_maker, -1, 1).astype(np.int8)


def _build_binance_trades(
    source: _Source, table: pd.DataFrame, locator: _Locator, _: int | None
) -> _Parsed:
    price = _floats(table, "price", source, locator)
    size = _floats(table, "qty", source, locator)
    side = _side_from_buyer_maker(_booleans(table, "is_buyer_maker", source, locator))
    return _trades(_times(table, "time", source, locator), price, size, side, "binance_trades")


def _build_binance_aggtrades(
    source: _Source, table: pd.DataFrame, locator: _Locator, _: int | None
) -> _Parsed:
    price = _floats(table, "price", source, locator)
    size = _floats(table, "quantity", source, locator)
    side = _side_from_buyer_maker(_booleans(table, "is_buyer_maker", source, locator))
    return _trades(
        _times(table, "transact_time", source, locator), price, size, side, "binance_aggtrades"
    )


_PositionalBuilder = Callable[[_Source, pd.DataFrame, _Locator, int | None], _Parsed]
_POSITIONAL_BUILDERS: dict[str, _PositionalBuilder] = {
    "binance_klines": _build_klines,
    "ohlcv_csv": _build_simple_ohlcv,
    "binance_trades": _build_binance_trades,
    "binance_aggtrades": _build_binance_aggtrades,
}


# --------------------------------------------------------------------------------------------
# Named-column tables (CSV with header, parquet, feather)
# --------------------------------------------------------------------------------------------


def _first(names: set[str], aliases: tuple[str, ...]) -> str | None:
    return next((a for a in aliases if a in names), None)


_TableBuilder = Callable[[pd.DataFrame, _Locator], _Parsed]


def _parse_table(
    source: _Source,
    table: pd.DataFrame,
    container: str,
    kind_hint: str | None,
    bar_minutes: int | None,
) -> _Parsed:
    """Classify a parquet/feather table by its column names and build the canonical frame."""
    builder = _table_builder(source, list(table.columns), container, kind_hint, bar_minutes, None)
    return builder(table, _Locator(source, header=False, text=False))


def _table_builder(
    source: _Source,
    columns: list[str],
    container: str,
    kind_hint: str | None,
    bar_minutes: int | None,
    first_line: str | None,
) -> _TableBuilder:
    """Pick the builder for a table with named columns; raise if the columns are not known."""
    names = set(columns)
    if orderbook.is_order_book_table(names):
        return orderbook.table_builder(source, columns)
    if {"agg_trade_id", "transact_time", "is_buyer_maker"} <= names:
        return lambda t, loc: _build_binance_aggtrades(
            source, t.rename(columns={"qty": "quantity"}), loc, None
        )
    if {"price", "qty", "time", "is_buyer_maker"} <= names:
        return lambda t, loc: _build_binance_trades(source, t, loc, None)
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
    rate_col = _first(names, _FUNDING_RATE_ALIASES)
    funding_time = _first(names, _FUNDING_TIME_ALIASES)
    if rate_col and funding_time and not set(_OHLCV) <= names:
        fmt = "funding_csv" if container == "csv" else f"{container}_funding"
        return lambda t, loc: _build_funding(source, t, loc, funding_time, rate_col, fmt)
    if {"timestamp", "side", "price", "amount"} <= names:
        return lambda t, loc: _build_side_trades(
            source, t, loc, "timestamp", "amount", "ccxt_trades"
        )
    time_col = _first(names, _TIME_ALIASES)
    if time_col and {"bid", "ask", "bid_size", "ask_size"} <= names:
        return lambda t, loc: _build_quotes(source, t, loc, f"{container}_quotes", time_col)
    if time_col and "price" in names and ({"quantity", "size", "qty"} & names):
        return lambda t, loc: _build_generic_trades(source, t, loc, time_col, container)
    if time_col and set(_OHLCV) <= names:
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
    if first_line is not None:
        raise DataError(f"{source.path}: unrecognised format (first line: {_clip(first_line)})")
    raise DataError(f"{source.path}: unrecognised format (columns: {_clip(','.join(columns))})")


def _build_named_ohlcv(
    source: _Source,
    table: pd.DataFrame,
    loc: _Locator,
    time_col: str,
    bar_minutes: int | None,
    fmt: str,
) -> _Parsed:
    columns = _ohlcv_columns(table, source, loc)
    if "taker_buy_volume" in table.columns:
        columns["taker_buy_volume"] = _floats(table, "taker_buy_volume", source, loc)
    time_ns = _times(table, time_col, source, loc)
    bar_ns = _bar_length_ns(time_ns, source, bar_minutes)
    if time_col == "ts":  # a frame saved by lbml itself: already indexed by close time
        time_ns = time_ns - bar_ns
    return _bars(time_ns, bar_ns, columns, source, fmt)


def _build_side_trades(
    source: _Source, table: pd.DataFrame, loc: _Locator, time_col: str, size_col: str, fmt: str
) -> _Parsed:
    price = _floats(table, "price", source, loc)
    size = _floats(table, size_col, source, loc)
    side = _side_from_text(table, "side", source, loc)
    symbol = _symbol_column(table)
    parsed = _trades(_times(table, time_col, source, loc), price, size, side, fmt)
    return _Parsed(parsed.kind, parsed.frame, fmt, symbol=symbol)


def _side_from_text(table: pd.DataFrame, col: str, source: _Source, loc: _Locator) -> np.ndarray:
    """Aggressor side from ``buy``/``sell`` (also ``BUYER``/``SELLER``, ``b``/``s``, ±1)."""
    text = table[col].astype(str).str.strip().str.lower()
    buy = text.isin(("buy", "buyer", "1", "1.0")).to_numpy()
    sell = text.isin(("sell", "seller", "-1", "2", "-1.0")).to_numpy()
    bad = ~(buy | sell)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        _raise_bad_value(source, loc, col, row, table[col].iloc[row], "a trade side (buy/sell)")
    return np.where(buy, 1, -1).astype(np.int8)


def _build_generic_trades(
    source: _Source, table: pd.DataFrame, loc: _Locator, time_col: str, container: str
) -> _Parsed:
    names = set(table.columns)
    size_col = _first(names, ("quantity", "size", "qty"))
    assert size_col is not None
    price = _floats(table, "price", source, loc)
    size = _floats(table, size_col, source, loc)
    maker_col = _first(names, ("buyer_maker", "is_buyer_maker"))
    if maker_col is not None:
        side = _side_from_buyer_maker(_booleans(table, maker_col, source, loc))
    elif "aggressor_side" in names:
        side = _side_from_text(table, "aggressor_side", source, loc)
    elif "side" in names:
        side = _side_from_text(table, "side", source, loc)
    else:
        raise DataError(
            f"{source.path}: trades have no aggressor side column (buyer_maker or side)"
        )
    parsed = _trades(_times(table, time_col, source, loc), price, size, side, f"{container}_trades")
    return _Parsed(parsed.kind, parsed.frame, parsed.format, symbol=_symbol_column(table))


def _build_quotes(
    source: _Source, table: pd.DataFrame, loc: _Locator, fmt: str, time_col: str = "timestamp"
) -> _Parsed:
    columns = {c: _floats(table, c, source, loc) for c in ("bid", "ask", "bid_size", "ask_size")}
    frame = pd.DataFrame(columns, index=_index(_times(table, time_col, source, loc)))
    return _Parsed("quotes", frame, fmt, symbol=_symbol_column(table))


def _build_funding(
    source: _Source, table: pd.DataFrame, loc: _Locator, time_col: str, rate_col: str, fmt: str
) -> _Parsed:
    rate = _floats(table, rate_col, source, loc)
    frame = pd.DataFrame({"rate": rate}, index=_index(_times(table, time_col, source, loc)))
    return _Parsed("funding", frame, fmt, symbol=_symbol_column(table))


def _symbol_column(table: pd.DataFrame) -> str | None:
    if "symbol" not in table.columns or len(table) == 0:
        return None
    first = str(table["symbol"].iloc[0]).strip()
    return re.sub(r"[/:]", "", first).upper() or None


# --------------------------------------------------------------------------------------------
# freqtrade JSON
# --------------------------------------------------------------------------------------------


def _parse_json(source: _Source, bar_minutes: int | None) -> _Parsed:
    try:
        rows = json.loads(source.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{source.path}: not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1:
            first = source.head().decode("utf-8-sig", errors="replace").split("\n", 1)[0]
            raise DataError(
                f"{source.path}: unrecognised format (JSON lines; first line: {_clip(first)})"
            ) from None
        raise DataError(f"{source.path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(rows, list) or (rows and not isinstance(rows[0], list)):
        raise DataError(
            f"{source.path}: unrecognised JSON format (expected a list of [ts, o, h, l, c, v] rows)"
        )
    if not rows:
        raise DataError(f"{source.path}: file has no data rows")
    try:
        values = np.array(rows, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != 6:
            raise ValueError
    except (ValueError, TypeError):
        _diagnose_json_rows(source, rows)
        raise DataError(
            f"{source.path}: unrecognised JSON format (expected rows of 6 numbers)"
        ) from None
    table = pd.DataFrame(values, columns=["open_time", *_OHLCV])
    table["open_time"] = table["open_time"].astype(np.int64)
    loc = _Locator(source, header=False, text=False)
    columns = _ohlcv_columns(table, source, loc)
    open_ns = _times(table, "open_time", source, loc)
    return _bars(
        open_ns, _bar_length_ns(open_ns, source, bar_minutes), columns, source, "freqtrade_json"
    )


def _diagnose_json_rows(source: _Source, rows: list[Any]) -> None:
    names = ("open_time", *_OHLCV)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != 6:
            found = len(row) if isinstance(row, list) else type(row).__name__
            raise DataError(f"{source.path}: row {number}: expected 6 values, found {found}")
        for name, value in zip(names, row, strict=True):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric and (isinstance(value, bool) or not _is_number(str(value))):
                raise DataError(
                    f"{source.path}: row {number}: column '{name}' is not a number ({value!r})"
                )
