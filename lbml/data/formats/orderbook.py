"""Order-book files to the canonical depth frame (5-level book summaries) and top-of-book quotes.

Called by :mod:`lbml.data.importers` when format detection finds order-book data. Formats
(``ImportedFile.format``):

=======================  ===========================================================================
format                   source
=======================  ===========================================================================
``tardis_book_snapshot`` Tardis.dev ``book_snapshot_N`` CSV (``asks[i].price``, ``asks[i].amount``,
                         ``bids[i]...``, N >= 5). Depth = sum of the amounts on levels 0-4 per side;
                         quotes from level 0.
``binance_depth_csv``    Binance USD-M historical depth CSV (``symbol,timestamp,first_update_id,
                         last_update_id,side,update_type,price,qty,pu``): ``snap`` rows then ``set``
                         updates. The book is rebuilt; one summary (and quote) per update event.
``binance_capture``      Raw Binance websocket capture as hftbacktest records it: text lines
                         ``<local receive ns> <JSON>``, a REST depth snapshot (``lastUpdateId``) and
                         combined-stream ``depthUpdate``, ``bookTicker`` and ``trade`` messages. Depth
                         from the rebuilt book, quotes from ``bookTicker``, trades from ``trade``.
=======================  ===========================================================================

Which timestamp is "when the information is known" (no look-ahead):

- Tardis rows carry ``timestamp`` (the exchange's time of the last book change) and
  ``local_timestamp`` (when Tardis' capture received the message). A snapshot can only be acted on
  once it is received, so the depth frame is indexed by ``local_timestamp`` (a few ms later). The
  Tardis trades/quotes importers keep the exchange ``timestamp``; a depth row is therefore never
  earlier than the trades of the same instant, the safe direction.
- The Binance depth CSV has only ``timestamp`` (exchange event time, ms); it is used as is.
- A capture is indexed by its own receive clock for every stream (depth, quotes, trades), so the
  streams stay mutually ordered even when the capture machine's clock is off (the hftbacktest sample
  is about 1.3 s behind Binance's event time ``E``).

The book is nautilus_trader's Rust ``OrderBook`` (L2, via ``nautilus_pyo3``): levels are upserted
with ``update``, removed with ``delete`` (size 0), and ``bids(5)``/``asks(5)`` read the best levels
(the Cython book's ``bids()`` copies every level, far too slow per event on a 1000-level book).
Update ids follow Binance's rules: updates wholly before the snapshot are dropped, the first one
applied must straddle it, and every later one must continue the previous (``pu`` = previous ``u``
for futures, ``U`` = previous ``u`` + 1 for spot). A gap, a crossed book after an event, a negative
size or a malformed row raises :class:`~lbml.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lbml.data.parsing import (
    CsvLayout,
    Locator,
    Parsed,
    Source,
    TableBuilder,
    floats,
    normalise_name,
    raise_bad_value,
    read_csv,
    symbol_column,
    times,
    ts_index,
)
from lbml.errors import DataError
from lbml.nautilus.orderbook import L2Book

LEVELS = 5  # the depth summary sums the best five price levels of each side
CAPTURE_LINE = re.compile(r"^\d{16,19} [\[{]")
_CAPTURE_PRECISION = 8  # Binance sends prices and sizes as decimal strings with at most 8 places
_MAX_PRECISION = 9
DEPTH_CSV_COLUMNS = {"timestamp", "first_update_id", "last_update_id", "side", "update_type", "price", "qty"}


# --------------------------------------------------------------------------------------------
# Detection (the registry of lbml.data.importers)
# --------------------------------------------------------------------------------------------


def is_capture(text: str) -> bool:
    """True when a text file's first characters are a websocket capture line (``<ns> <JSON>``)."""
    return CAPTURE_LINE.match(text.lstrip()) is not None


def recognize_table(
    source: Source, names: set[str], columns: list[str], container: str, kind_hint: str | None,
    bar_minutes: int | None,
) -> TableBuilder | None:
    """The builder for an order-book table (a ``DataError`` for unsupported layouts), or None."""
    return table_builder(source, columns) if is_order_book_table(names) else None


def is_order_book_table(names: set[str]) -> bool:
    """True when a table's columns are order-book data (supported or not)."""
    return "update_type" in names or any(n.startswith(("asks[", "bids[")) for n in names)


def table_builder(source: Any, names: list[str]) -> Callable[[pd.DataFrame, Any], Any]:
    """The builder for an order-book table, or a ``DataError`` for unsupported layouts."""
    name_set = set(names)
    if {"timestamp", "local_timestamp"} <= name_set and "asks[0]_price" in name_set:
        return lambda t, loc: _build_tardis(source, t, loc)
    if DEPTH_CSV_COLUMNS <= name_set:
        return lambda t, loc: rebuild_depth_csv([read_depth_rows(source, t, loc)])
    raise DataError(
        f"{source.path}: unsupported order-book layout (columns: {','.join(names)[:80]}); "
        "supported: Tardis book_snapshot_N CSV, Binance depth CSV, Binance websocket capture"
    )


# --------------------------------------------------------------------------------------------
# The book
# --------------------------------------------------------------------------------------------


def _new_book(price_precision: int, size_precision: int) -> L2Book:
    """nautilus' Rust L2 order book, summarising the best ``LEVELS`` of each side."""
    return L2Book(price_precision, size_precision, LEVELS)


class _Summaries:
    """Collects (ts, summary) rows and turns them into the depth and quote frames."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.rows: list[tuple[float, ...]] = []

    def add(self, ts: int, row: tuple[float, ...], where: Callable[[], str]) -> None:
        if row[2] == row[2] and row[4] == row[4] and row[2] >= row[4]:
            raise DataError(
                f"{where()}: crossed book after this update (best bid {row[2]:.12g} >= best ask {row[4]:.12g})"
            )
        self.ts.append(ts)
        self.rows.append(row)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        values = np.array(self.rows, dtype=np.float64).reshape(-1, 6)
        index = ts_index(np.array(self.ts, dtype=np.int64))
        depth = pd.DataFrame({"bid_depth": values[:, 0], "ask_depth": values[:, 1]}, index=index)
        two_sided = np.isfinite(values[:, 2]) & np.isfinite(values[:, 4])
        quotes = pd.DataFrame(
            {"bid": values[:, 2], "ask": values[:, 4], "bid_size": values[:, 3], "ask_size": values[:, 5]},
            index=index,
        )[two_sided]
        return depth, quotes


def _precision(values: np.ndarray) -> int:
    """Decimals needed to hold every value exactly (at most 9, nautilus' fixed precision)."""
    values = values[np.isfinite(values)]
    for p in range(_MAX_PRECISION + 1):
        scaled = values * 10.0**p
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled)) * 1e-3):
            return p
    return _MAX_PRECISION


# --------------------------------------------------------------------------------------------
# Tardis book_snapshot_N
# --------------------------------------------------------------------------------------------


def _build_tardis(source: Any, table: pd.DataFrame, loc: Any):
    names = set(table.columns)
    for side in ("asks", "bids"):
        for i in range(LEVELS):
            for field in ("price", "amount"):
                if f"{side}[{i}]_{field}" not in names:
                    raise DataError(
                        f"{source.path}: book snapshot lacks column '{side}[{i}].{field}' "
                        f"(the depth summary needs {LEVELS} levels per side)"
                    )
    sums, tops = {}, {}
    for side in ("bids", "asks"):
        prices = np.column_stack([_level_column(source, table, loc, f"{side}[{i}]_price") for i in range(LEVELS)])
        amounts = np.column_stack([_level_column(source, table, loc, f"{side}[{i}]_amount") for i in range(LEVELS)])
        _check_levels(source, loc, side, prices, amounts)
        sums[side] = np.nansum(amounts, axis=1)
        tops[side] = (prices[:, 0], amounts[:, 0])
    bid, bid_size = tops["bids"]
    ask, ask_size = tops["asks"]
    crossed = np.flatnonzero(bid >= ask)  # NaN (an empty side) compares False
    if len(crossed):
        row = int(crossed[0])
        raise DataError(
            f"{source.path}: {loc.where(row)}: crossed book (bids[0].price {bid[row]:.12g} >= asks[0].price {ask[row]:.12g})"
        )
    index = ts_index(times(table, "local_timestamp", source, loc))
    depth = pd.DataFrame({"bid_depth": sums["bids"], "ask_depth": sums["asks"]}, index=index)
    two_sided = np.isfinite(bid) & np.isfinite(ask)
    quotes = pd.DataFrame({"bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}, index=index)
    return Parsed(
        "depth", depth, "tardis_book_snapshot", symbol=symbol_column(table), streams={"quotes": quotes[two_sided]}
    )


def _level_column(source: Any, table: pd.DataFrame, loc: Any, col: str) -> np.ndarray:
    """A level column as float64; empty cells (a side with fewer levels) are NaN."""
    values = table[col]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        floats(table, col, source, loc)  # raises on the first cell that is not a number
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def _check_levels(source: Any, loc: Any, side: str, prices: np.ndarray, amounts: np.ndarray) -> None:
    def fail(mask: np.ndarray, what: Callable[[int, int], str]) -> None:
        rows, levels = np.nonzero(mask)
        if len(rows):
            first = int(np.argmin(rows))
            row, level = int(rows[first]), int(levels[first])
            raise DataError(f"{source.path}: {loc.where(row)}: {what(row, level)}")

    fail(np.isnan(prices) != np.isnan(amounts), lambda r, i: f"level {side}[{i}] has a price or an amount but not both")
    fail(amounts < 0, lambda r, i: f"column '{side}[{i}].amount' is negative ({amounts[r, i]:.12g})")
    fail(prices <= 0, lambda r, i: f"column '{side}[{i}].price' is not positive ({prices[r, i]:.12g})")
    fail(np.isinf(prices) | np.isinf(amounts), lambda r, i: f"level {side}[{i}] is infinite")
    step = np.diff(prices, axis=1)
    wrong = (step >= 0) if side == "bids" else (step <= 0)
    order = "below" if side == "bids" else "above"
    fail(wrong, lambda r, i: f"{side}[{i + 1}].price is not {order} {side}[{i}].price")


# --------------------------------------------------------------------------------------------
# Binance depth CSV (snap + set rows)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthRows:
    """The validated rows of one Binance depth CSV file, in file order."""

    source: Any
    loc: Any
    ts: np.ndarray  # int64 ns
    first: np.ndarray  # int64 U
    last: np.ndarray  # int64 u
    prev: np.ndarray  # int64 pu (-1 when absent)
    snap: np.ndarray  # bool
    bid: np.ndarray  # bool
    price: np.ndarray
    size: np.ndarray
    symbol: str | None


def read_depth_rows(source: Any, table: pd.DataFrame, loc: Any) -> DepthRows:
    side = table["side"].astype(str).str.strip().str.lower()
    is_bid = side.isin(("b", "bid", "buy")).to_numpy()
    bad = ~(is_bid | side.isin(("a", "ask", "sell")).to_numpy())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise_bad_value(source, loc, "side", row, table["side"].iloc[row], "a book side (a/b)")
    kind = table["update_type"].astype(str).str.strip().str.lower()
    snap = (kind == "snap").to_numpy()
    bad = ~(snap | (kind == "set").to_numpy())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise_bad_value(source, loc, "update_type", row, table["update_type"].iloc[row], "'snap' or 'set'")
    price = floats(table, "price", source, loc)
    size = floats(table, "qty", source, loc)
    for name, values, bad, problem in (
        ("price", price, ~(np.isfinite(price) & (price > 0)), "is not a positive finite number"),
        ("qty", size, ~np.isfinite(size), "is not a finite number"),
        ("qty", size, size < 0, "is negative"),
    ):
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source.path}: {loc.where(row)}: column '{name}' {problem} ({values[row]:.12g})")
    ids = {c: _ids(source, table, loc, c) for c in ("first_update_id", "last_update_id")}
    prev = _ids(source, table, loc, "pu") if "pu" in table.columns else np.full(len(table), -1, np.int64)
    return DepthRows(
        source=source,
        loc=loc,
        ts=times(table, "timestamp", source, loc),
        first=ids["first_update_id"],
        last=ids["last_update_id"],
        prev=prev,
        snap=snap,
        bid=is_bid,
        price=price,
        size=size,
        symbol=symbol_column(table),
    )


def _ids(source: Any, table: pd.DataFrame, loc: Any, col: str) -> np.ndarray:
    values = table[col]
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64)
    numbers = floats(table, col, source, loc)
    bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise_bad_value(source, loc, col, row, values.iloc[row], "an update id (integer)")
    return numbers.astype(np.int64)


def rebuild_depth_csv(files: Sequence[DepthRows]):
    """Replay snapshots and updates of one or more depth CSV files through the book."""
    first = files[0]
    fields = ("ts", "first", "last", "prev", "snap", "bid", "price", "size")
    cat = {f: np.concatenate([getattr(rows, f) for rows in files]) for f in fields}
    file_no = np.concatenate([np.full(len(rows.ts), k) for k, rows in enumerate(files)])
    row_no = np.concatenate([np.arange(len(rows.ts)) for rows in files])
    if not cat["snap"].any():
        raise DataError(
            f"{first.source.path}: order-book updates without a snapshot (no 'snap' rows): the book cannot "
            "be rebuilt; load the update file together with its snapshot file"
        )
    # Sequencing order: by last update id, a snapshot before the updates that end on the same id.
    order = np.lexsort((cat["snap"] == 0, cat["last"]))
    key = np.stack([cat["last"][order], cat["snap"][order], file_no[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]).any(axis=1)])
    ends = np.r_[starts[1:], len(order)]
    book = _new_book(_precision(cat["price"]), _precision(cat["size"]))
    out = _Summaries()
    last_id: int | None = None
    need_straddle = False
    for s, e in zip(starts, ends, strict=True):
        rows = order[s:e]
        head = int(rows[0])
        ts = int(cat["ts"][rows].max())
        f_no, r_no = int(file_no[head]), int(row_no[head])

        def where(f_no: int = f_no, r_no: int = r_no) -> str:
            return f"{files[f_no].source.path}: {files[f_no].loc.where(r_no)}"

        U, u, pu = int(cat["first"][head]), int(cat["last"][head]), int(cat["prev"][head])
        if cat["snap"][head]:
            book.clear(ts)
            last_id, need_straddle = u, True
        elif last_id is None or u < last_id:
            continue  # before the first snapshot, or already contained in it
        elif need_straddle:
            if U > last_id:
                raise DataError(
                    f"{where()}: first update after the snapshot starts at id {U}, after the snapshot's "
                    f"{last_id}: updates are missing (the files do not chain)"
                )
            need_straddle = False
        elif (pu >= 0 and pu != last_id) or (pu < 0 and U > last_id + 1):
            got = pu if pu >= 0 else U
            raise DataError(f"{where()}: update ids jump from {last_id} to {got}: updates are missing")
        for r in rows:
            book.set_level(bool(cat["bid"][r]), float(cat["price"][r]), float(cat["size"][r]), ts)
        last_id = u
        out.add(ts, book.summary(), where)
    depth, quotes = out.frames()
    return Parsed("depth", depth, "binance_depth_csv", symbol=first.symbol, streams={"quotes": quotes})


# --------------------------------------------------------------------------------------------
# Binance websocket capture (hftbacktest layout)
# --------------------------------------------------------------------------------------------


def _capture_lines(sources: Sequence[Any]) -> Iterator[tuple[Any, int, str]]:
    for source in sources:
        try:
            with source.binary() as raw:  # plain, gzip or a one-file zip
                for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), start=1):
                    if line.strip():
                        yield source, number, line
        except UnicodeDecodeError as exc:
            raise DataError(f"{source.path}: corrupt or unreadable capture ({exc})") from None


class _CaptureReader:
    """Replays capture messages: REST snapshot + depth diffs into the book, bookTicker, trades."""

    def __init__(self) -> None:
        self.book: L2Book | None = None
        self.last_id: int | None = None
        self.pending: list[tuple[int, dict, Callable[[], str]]] = []  # diffs before the snapshot
        self.depth = _Summaries()
        self.quotes: list[tuple[int, float, float, float, float]] = []
        self.trades: list[tuple[int, float, float, int]] = []
        self.symbol: str | None = None
        self._straddle = False

    def feed(self, source: Any, number: int, line: str) -> None:
        def where() -> str:
            return f"{source.path}: line {number}"

        stamp, _, text = line.partition(" ")
        try:
            ts = int(stamp)
            message = json.loads(text)
        except ValueError as exc:
            problem = "not valid JSON" if stamp.isdigit() else "expected '<receive time ns> <JSON message>'"
            raise DataError(f"{where()}: {problem} ({str(exc).splitlines()[0][:60]})") from None
        if not isinstance(message, dict):
            raise DataError(f"{where()}: expected a JSON object")
        try:
            if "lastUpdateId" in message:
                self._snapshot(ts, message, where)
                return
            data = message.get("data", message)
            stream = str(message.get("stream", ""))
            event = data.get("e") if isinstance(data, dict) else None
            if event == "depthUpdate":
                self._symbol(data.get("s"), where)
                self._diff(ts, data, where)
            elif stream.endswith("@bookTicker") or (event is None and {"b", "B", "a", "A", "u"} <= set(data)):
                self._symbol(data.get("s"), where)
                try:
                    bid, bid_size, ask, ask_size = float(data["b"]), float(data["B"]), float(data["a"]), float(data["A"])
                except (TypeError, ValueError):
                    bid, bid_size, ask, ask_size = (_number(data[k], k, where) for k in ("b", "B", "a", "A"))
                prices_ok = 0 < bid < math.inf and 0 < ask < math.inf
                if not (prices_ok and 0 <= bid_size < math.inf and 0 <= ask_size < math.inf):
                    raise DataError(f"{where()}: bookTicker with a price or size that is not positive and finite")
                self.quotes.append((ts, bid, ask, bid_size, ask_size))
            elif event in ("trade", "aggTrade"):
                self._symbol(data.get("s"), where)
                price, size = _number(data["p"], "p", where), _number(data["q"], "q", where)
                if price <= 0 or size <= 0:
                    raise DataError(f"{where()}: trade with a non-positive price or size")
                self.trades.append((ts, price, size, -1 if data["m"] else 1))
            # other streams (markPrice, kline, ...) carry nothing the canonical frames hold
        except KeyError as exc:
            raise DataError(f"{where()}: message lacks field {exc}") from None

    def _symbol(self, symbol: Any, where: Callable[[], str]) -> None:
        if symbol is None:
            return
        if self.symbol is None:
            self.symbol = str(symbol).upper()
        elif str(symbol).upper() != self.symbol:
            raise DataError(f"{where()}: capture mixes symbols ({self.symbol} and {symbol})")

    def _levels(self, levels: Any, name: str, where: Callable[[], str]) -> list[tuple[float, float]]:
        if not isinstance(levels, list):
            raise DataError(f"{where()}: field '{name}' is not a list of [price, size] levels")
        try:  # fast path: a well-formed list of [price, size] decimal strings
            values = [(float(p), float(q)) for p, q in levels]
            if all(0 < p < math.inf and 0 <= q < math.inf for p, q in values):
                return values
        except (ValueError, TypeError):
            pass
        out = []
        for level in levels:
            if not isinstance(level, list) or len(level) < 2:
                raise DataError(f"{where()}: field '{name}' holds a level that is not [price, size]")
            price, size = _number(level[0], name, where), _number(level[1], name, where)
            if size < 0:
                raise DataError(f"{where()}: negative size {size:.12g} at price {price:.12g} in '{name}'")
            if price <= 0:
                raise DataError(f"{where()}: non-positive price {price:.12g} in '{name}'")
            out.append((price, size))
        return out

    def _snapshot(self, ts: int, message: dict, where: Callable[[], str]) -> None:
        bids = self._levels(message["bids"], "bids", where)
        asks = self._levels(message["asks"], "asks", where)
        if self.book is None:
            self.book = _new_book(_CAPTURE_PRECISION, _CAPTURE_PRECISION)
        self.book.clear(ts)
        for is_bid, levels in ((True, bids), (False, asks)):
            for price, size in levels:
                self.book.set_level(is_bid, price, size, ts)
        self.last_id = int(message["lastUpdateId"])
        pending, self.pending = self.pending, []
        self._straddle = True
        for _, data, pending_where in pending:
            self._apply(ts, data, pending_where, emit=False)
        self.depth.add(ts, self.book.summary(), where)

    def _diff(self, ts: int, data: dict, where: Callable[[], str]) -> None:
        if self.last_id is None:
            self.pending.append((ts, data, where))
            return
        self._apply(ts, data, where, emit=True)

    def _apply(self, ts: int, data: dict, where: Callable[[], str], *, emit: bool) -> None:
        assert self.book is not None and self.last_id is not None
        U, u = int(data["U"]), int(data["u"])
        futures = "pu" in data
        last = self.last_id
        if u < last or (not futures and u == last):
            return  # already contained in the snapshot
        if self._straddle:
            if U > last + (0 if futures else 1):
                raise DataError(
                    f"{where()}: first depth update after the snapshot starts at id {U}, after the "
                    f"snapshot's {last}: updates are missing"
                )
            self._straddle = False
        elif (futures and int(data["pu"]) != last) or (not futures and U != last + 1):
            got = int(data["pu"]) if futures else U
            raise DataError(f"{where()}: depth update ids jump from {last} to {got}: updates are missing")
        for is_bid, key in ((True, "b"), (False, "a")):
            for price, size in self._levels(data[key], key, where):
                self.book.set_level(is_bid, price, size, ts)
        self.last_id = u
        if emit:
            self.depth.add(ts, self.book.summary(), where)

    def result(self, first_path: Path):
        if self.book is None:
            raise DataError(
                f"{first_path}: capture has no REST depth snapshot (a line with 'lastUpdateId'): the book "
                "cannot be rebuilt; load it after the capture file of the same session that holds the snapshot"
            )
        depth, _ = self.depth.frames()
        q = np.array(self.quotes, dtype=np.float64).reshape(-1, 5)
        quotes = pd.DataFrame(
            {"bid": q[:, 1], "ask": q[:, 2], "bid_size": q[:, 3], "ask_size": q[:, 4]},
            index=ts_index(np.array([r[0] for r in self.quotes], dtype=np.int64)),
        )
        t = self.trades
        trades = pd.DataFrame(
            {
                "price": np.array([r[1] for r in t], dtype=np.float64),
                "size": np.array([r[2] for r in t], dtype=np.float64),
                "side": np.array([r[3] for r in t], dtype=np.int8),
            },
            index=ts_index(np.array([r[0] for r in t], dtype=np.int64)),
        )
        streams = {"quotes": quotes, "trades": trades}
        return Parsed("depth", depth, "binance_capture", symbol=self.symbol, streams=streams)


def _number(value: Any, name: str, where: Callable[[], str]) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where()}: field '{name}' is not a number ({str(value)[:40]!r})") from None
    if not math.isfinite(number):
        raise DataError(f"{where()}: field '{name}' is not finite ({value!r})")
    return number


def parse_capture(sources: Sequence[Any]):
    """Rebuild depth, quotes and trades from one or more consecutive capture files."""
    reader = _CaptureReader()
    for source, number, line in _capture_lines(sources):
        reader.feed(source, number, line)
    return reader.result(sources[0].path)


# --------------------------------------------------------------------------------------------
# Several files at once (scenario ``data.depth_paths``; :func:`lbml.data.importers.load_depth`)
# --------------------------------------------------------------------------------------------


def sniff_depth_format(source: Source) -> str | None:
    """``"binance_capture"`` or ``"binance_depth_csv"`` (formats whose books continue across files), else None."""
    if source.container != "text":
        return None
    first = next((ln for ln in source.head().decode("utf-8-sig", errors="replace").split("\n") if ln.strip()), "")
    if CAPTURE_LINE.match(first):
        return "binance_capture"
    names = {normalise_name(f) for f in first.rstrip("\r").split(",")}
    return "binance_depth_csv" if DEPTH_CSV_COLUMNS <= names else None


def depth_csv_rows(source: Source) -> DepthRows:
    """The rows of one Binance depth CSV file, to replay with its neighbours (:func:`rebuild_depth_csv`)."""
    head = source.head().decode("utf-8-sig", errors="replace")
    first = next((ln.rstrip("\r") for ln in head.split("\n") if ln.strip()), "")
    layout = CsvLayout("table", tuple(normalise_name(f.strip()) for f in first.split(",")), header=True)
    loc = Locator(source, header=True)
    return read_depth_rows(source, read_csv(source, layout, loc), loc)
