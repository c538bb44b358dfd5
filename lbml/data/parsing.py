"""Parsing helpers shared by every market-data format (:mod:`lbml.data.importers` and the format
families in :mod:`lbml.data.formats`).

Opening a file (:class:`Source`: compression and container by magic bytes), locating a data row
for error messages (:class:`Locator`), reading a CSV with pandas' C parser, converting columns
(numbers, booleans, timestamps in any epoch unit or ISO-8601) with one-line ``DataError``s naming
the file, line and column, and building the canonical bar and trade frames. A format family
parses its layout with these and returns a :class:`Parsed`; the front door turns that into an
:class:`ImportedFile`.
"""

from __future__ import annotations

import gzip
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

from lbml.data.frames import BAR_COLUMNS
from lbml.errors import DataError

NS_PER_MINUTE = 60 * 1_000_000_000
_SNIFF_BYTES = 64 * 1024
_MIN_EPOCH_SECONDS = 1_000_000_000  # 2001-09-09: anything smaller is not a market-data timestamp
_NAN_LITERALS = frozenset({"nan", "+nan", "-nan"})
_TRUE = frozenset({"true", "1", "t", "yes", "y"})
_FALSE = frozenset({"false", "0", "f", "no", "n"})
_QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR")
_INTERVAL_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
HEADER_NAME = re.compile(r"^[a-z_][a-z0-9_\[\]()%-]*$")
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
        Short name of the detected format (the table in :mod:`lbml.data.importers`).
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
# Parsed data and names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    kind: str
    frame: pd.DataFrame
    format: str
    bar_minutes: int | None = None
    symbol: str | None = None
    streams: dict[str, pd.DataFrame] = field(default_factory=dict)


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


def interval_from_name(file_name: str) -> int | None:
    """Bar length in minutes from a ``-1m-``/``_5m``/``-1h`` token in the file name."""
    match = re.search(r"(?:^|[-_.])(\d+)([mhdw])(?:$|[-_.])", _strip_suffixes(file_name))
    if not match:
        return None
    return int(match.group(1)) * _INTERVAL_MINUTES[match.group(2)]


def normalise_name(name: object) -> str:
    return re.sub(r"[\s.]+", "_", str(name).strip().strip('"').strip("'").lower())


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_bool(text: str) -> bool:
    return text.lower() in ("true", "false")

# --------------------------------------------------------------------------------------------
# Opening files: compression / container detection
# --------------------------------------------------------------------------------------------


@dataclass
class Source:
    """An opened data file: its container type and a way to (re)read its decompressed bytes."""

    path: Path
    container: str  # "text", "parquet", "feather"
    compression: str | None  # None, "gzip", "zip"
    member_name: str | None = None
    _raw_lines: list[str] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path) -> Source:
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


def read_columnar(source: Source, reader: Callable[..., pd.DataFrame], name: str) -> pd.DataFrame:
    try:
        table = reader(source.path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataError(f"{source.path}: not a readable {name} file ({one_line(exc)})") from None
    if len(table) == 0:
        raise DataError(f"{source.path}: file has no data rows")
    table = table.reset_index(drop=isinstance(table.index, pd.RangeIndex))
    table.columns = [normalise_name(c) for c in table.columns]
    return table

# --------------------------------------------------------------------------------------------
# Locating rows for error messages
# --------------------------------------------------------------------------------------------


@dataclass
class Locator:
    """Maps a data row (0-based) to a human position: ``line N`` for text, ``row N`` otherwise."""

    source: Source
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


TableBuilder = Callable[[pd.DataFrame, Locator], Parsed]  # a recognised table's columns → its frame


@dataclass(frozen=True)
class CsvLayout:
    format: str
    names: tuple[str, ...]  # column names as pandas will see them
    header: bool


def read_csv(source: Source, layout: CsvLayout, locator: Locator) -> pd.DataFrame:
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
        check_field_counts(source, layout, locator)
        raise DataError(f"{source.path}: cannot parse CSV ({one_line(exc)})") from None
    except UnicodeDecodeError:
        raise DataError(f"{source.path}: not a UTF-8 text file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{source.path}: file is empty") from None
    except ValueError as exc:  # e.g. duplicate column names in the header
        raise DataError(f"{source.path}: cannot parse CSV ({one_line(exc)})") from None
    if len(table) == 0:
        raise DataError(f"{source.path}: file has a header but no data rows")
    if table.isna().to_numpy().any():
        # Short rows are padded with NaN by pandas: report them as what they are.
        check_field_counts(source, layout, locator)
    return table


def check_field_counts(source: Source, layout: CsvLayout, locator: Locator) -> None:
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


def raise_bad_value(
    source: Source, locator: Locator, col: str, row: int, value: Any, what: str
) -> None:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    problem = "is empty" if not text.strip() else f"is not {what} ({clip(text, 40)!r})"
    raise DataError(f"{source.path}: {locator.where(row)}: column '{col}' {problem}")


def floats(table: pd.DataFrame, col: str, source: Source, locator: Locator) -> np.ndarray:
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
            raise_bad_value(source, locator, col, row, raw.iloc[row], "a number")
    elif bad.any():
        nan_like = values.map(
            lambda v: v is None or isinstance(v, float) or str(v).strip().lower() in _NAN_LITERALS
        )
        bad &= ~nan_like.to_numpy(dtype=bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise_bad_value(source, locator, col, row, values.iloc[row], "a number")
    return numbers.to_numpy(dtype=np.float64)


def booleans(table: pd.DataFrame, col: str, source: Source, locator: Locator) -> np.ndarray:
    values = table[col]
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    is_true = text.isin(_TRUE).to_numpy()
    is_false = text.isin(_FALSE).to_numpy()
    bad = ~(is_true | is_false)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise_bad_value(source, locator, col, row, values.iloc[row], "true/false")
    return is_true


def epoch_to_ns(values: np.ndarray) -> np.ndarray:
    """Epoch numbers in s, ms, µs or ns (decided per value by magnitude) to int64 ns."""
    magnitude = np.abs(values)
    factor = np.select(
        [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1e9, 1e6, 1e3], default=1.0
    )
    if values.dtype.kind in "iu":
        return values.astype(np.int64) * factor.astype(np.int64)
    return np.round(values * factor).astype(np.int64)


def times(table: pd.DataFrame, col: str, source: Source, locator: Locator) -> np.ndarray:
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
        numbers = floats(table, col, source, locator)
        if np.isnan(numbers).any():
            raise_bad_value(
                source, locator, col, int(np.flatnonzero(np.isnan(numbers))[0]), "", ""
            )
        if np.all(numbers == np.floor(numbers)) and np.abs(numbers).max() < 2**62:
            numbers = numbers.astype(np.int64)
    implausible = np.abs(numbers) < _MIN_EPOCH_SECONDS
    if implausible.any():
        row = int(np.flatnonzero(implausible)[0])
        raise_bad_value(source, locator, col, row, values.iloc[row], "a plausible epoch timestamp")
    return epoch_to_ns(numbers)


def _iso_to_ns(values: pd.Series, col: str, source: Source, locator: Locator) -> np.ndarray:
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    return _datetimes_to_ns(parsed, col, source, locator, original=values)


def _datetimes_to_ns(
    parsed: pd.Series,
    col: str,
    source: Source,
    locator: Locator,
    original: pd.Series | None = None,
) -> np.ndarray:
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        shown = (original if original is not None else parsed).iloc[row]
        raise_bad_value(source, locator, col, row, shown, "a valid timestamp")
    index = pd.DatetimeIndex(parsed)
    # Naive timestamps are taken as UTC.
    index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    return index.as_unit("ns").asi8


def first_of(names: set[str], aliases: tuple[str, ...]) -> str | None:
    return next((a for a in aliases if a in names), None)


def symbol_column(table: pd.DataFrame) -> str | None:
    if "symbol" not in table.columns or len(table) == 0:
        return None
    first = str(table["symbol"].iloc[0]).strip()
    return re.sub(r"[/:]", "", first).upper() or None

# --------------------------------------------------------------------------------------------
# Canonical frames
# --------------------------------------------------------------------------------------------


def ts_index(ns: np.ndarray) -> pd.DatetimeIndex:
    values = np.asarray(ns, dtype=np.int64).view("datetime64[ns]")
    return pd.DatetimeIndex(values, name="ts").tz_localize("UTC")


def bar_length_ns(open_ns: np.ndarray, source: Source, bar_minutes: int | None) -> int:
    """Bar length: explicit, else the median positive spacing, else the file name's interval."""
    if bar_minutes is not None:
        return bar_minutes * NS_PER_MINUTE
    steps = np.diff(open_ns)
    steps = steps[steps > 0]
    if len(steps):
        return int(np.median(steps))
    named = interval_from_name(source.member_name or source.path.name)
    if named is None:
        raise DataError(f"{source.path}: cannot infer the bar length from a single timestamp")
    return named * NS_PER_MINUTE


def whole_minutes(bar_ns: int, source: Source) -> int:
    if bar_ns % NS_PER_MINUTE != 0 or bar_ns <= 0:
        seconds = bar_ns / 1e9
        raise DataError(f"{source.path}: bar length {seconds:g}s is not a whole number of minutes")
    return bar_ns // NS_PER_MINUTE


def build_bars(
    open_ns: np.ndarray, bar_ns: int, columns: dict[str, np.ndarray], source: Source, fmt: str
) -> Parsed:
    frame = pd.DataFrame(columns, index=ts_index(open_ns + bar_ns))
    return Parsed("bars", frame, fmt, bar_minutes=whole_minutes(bar_ns, source))


def ohlcv_columns(
    table: pd.DataFrame, source: Source, locator: Locator
) -> dict[str, np.ndarray]:
    return {c: floats(table, c, source, locator) for c in BAR_COLUMNS}


def build_trades(
    time_ns: np.ndarray, price: np.ndarray, size: np.ndarray, side: np.ndarray, fmt: str
) -> Parsed:
    frame = pd.DataFrame(
        {"price": price, "size": size, "side": side.astype(np.int8)}, index=ts_index(time_ns)
    )
    return Parsed("trades", frame, fmt)


def side_from_buyer_maker(buyer_maker: np.ndarray) -> np.ndarray:
    """Buyer was the maker -> the seller hit the bid -> seller aggressor (-1)."""
    return np.where(buyer_maker, -1, 1).astype(np.int8)
