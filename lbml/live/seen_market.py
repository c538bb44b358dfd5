"""The market a paper session has seen up to one of its items: what its retrains train on.

A replay's feed is the scenario's own market, so the market itself is what the session has seen
(``ReplayMarket``: nothing after a window's end is read, as training reads nothing after it). A live
feed (ZeroMQ, Binance) cannot be rewound, and its events are not in the scenario's data: the
session keeps them in its state database, in the same transaction as the rest of each commit
(``lbml.live.state``): every delivered event in ``journal`` and every bar it built in ``bars``. A
``kill -9`` therefore loses none of what a later retrain (or a relaunched one) reads.
``LiveMarket`` rebuilds the market from there: the scenario's history up to the paper window's
start (what the session was warmed up on), then the bars, trades, quotes, depth and funding the
feed delivered, up to a given item and none after it.

Both are read from any thread: ``LiveMarket`` opens its own read-only connection per call.
"""

import sqlite3
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lbml.data.frames import BAR_COLUMNS, DEPTH_COLUMNS, QUOTE_COLUMNS, TRADE_COLUMNS, InstrumentData, MarketData
from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE
from lbml.live.state import DB_NAME


@dataclass(frozen=True)
class ReplayMarket:
    """A replay session's market: the scenario's data, which is its feed."""

    market: MarketData

    def bar_index(self, symbol: str, pos: int) -> pd.DatetimeIndex:  # noqa: ARG002 - every feed's signature
        return self.market[symbol].bars.index

    def at(self, pos: int, start: pd.Timestamp, end: pd.Timestamp, after_pos: int = 0) -> MarketData:  # noqa: ARG002
        return self.market


@dataclass(frozen=True)
class LiveMarket:
    """A live session's market up to an item: history up to ``cut``, then the state database's."""

    history: MarketData
    cut: pd.Timestamp  # the paper window's start: history after it is not what the feed delivered
    state_dir: Path

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{(Path(self.state_dir) / DB_NAME).resolve().as_uri()}?mode=ro", uri=True)

    def bar_index(self, symbol: str, pos: int) -> pd.DatetimeIndex:
        """Close times of ``symbol``'s bars known after item ``pos``."""
        with closing(self._connect()) as db:
            stored = [r[0] for r in db.execute("SELECT ts FROM bars WHERE symbol = ? AND pos <= ? ORDER BY i",
                                               (symbol, pos))]
        live = pd.DatetimeIndex(pd.to_datetime(np.asarray(stored, dtype=np.int64), utc=True), name="ts")
        return self._history(self.history[symbol].bars, live).index.append(live)

    def at(self, pos: int, start: pd.Timestamp, end: pd.Timestamp, after_pos: int = 0) -> MarketData:
        """The market known after item ``pos``, from one bar before ``start`` (depth: all of it) to ``end``;
        with ``after_pos``, only the feed's items after it (an index range: no history, no scan)."""
        first = int((start - pd.Timedelta(minutes=self.history.bar_minutes)).value)
        with closing(self._connect()) as db:
            bars = db.execute("SELECT symbol, ts, open, high, low, close, volume, taker_buy_volume FROM bars "
                              "WHERE pos > ? AND pos <= ? AND ts >= ? AND ts <= ? ORDER BY i",
                              (after_pos, pos, first, end.value)).fetchall()
            events = db.execute("SELECT kind, symbol, ts, a, b, c, d FROM journal WHERE pos > ? AND pos <= ? "
                                "AND ts <= ? AND (ts >= ? OR kind = ?) ORDER BY pos",
                                (after_pos, pos, end.value, first, DEPTH)).fetchall()
        by_kind: dict[tuple[int, str], list[tuple]] = {}
        for kind, symbol, ts, a, b, c, d in events:
            by_kind.setdefault((kind, symbol), []).append((ts, a, b, c, d))
        lo = pd.Timestamp(first, tz="UTC")
        history = self.history if not after_pos else _empty(self.history)
        instruments = {}
        for symbol, inst in history.instruments.items():
            mine = [r[1:] for r in bars if r[0] == symbol]
            live_bars = _frame(mine, ("open", "high", "low", "close", "volume", "taker_buy_volume"))
            hist_bars = self._history(inst.bars, live_bars.index, lo)
            if "taker_buy_volume" not in hist_bars:
                live_bars = live_bars[list(BAR_COLUMNS)]
            trades = _frame([r[:4] for r in by_kind.get((TRADE, symbol), [])], TRADE_COLUMNS)
            trades["side"] = trades["side"].astype(np.int8)
            quotes = _frame(by_kind.get((QUOTE, symbol), []), QUOTE_COLUMNS)
            depth = _frame([r[:3] for r in by_kind.get((DEPTH, symbol), [])], DEPTH_COLUMNS)
            instruments[symbol] = replace(
                inst,
                bars=_concat(hist_bars, live_bars),
                trades=_concat(self._history(inst.trades, trades.index, lo), trades) if inst.trades is not None else None,
                quotes=_concat(self._history(inst.quotes, quotes.index, lo), quotes) if inst.quotes is not None else None,
                depth=_concat(self._history(inst.depth, depth.index), depth) if inst.depth is not None or len(depth)
                else None,
            )
        funding = {}
        for symbol in set(history.funding) | {s for k, s in by_kind if k == FUNDING}:
            live = _frame([r[:2] for r in by_kind.get((FUNDING, symbol), [])], ("rate",))
            hist = history.funding.get(symbol)
            funding[symbol] = _concat(self._history(hist, live.index, lo), live) if hist is not None else live
        return MarketData(instruments, funding, self.history.bar_minutes)

    def _history(self, frame: pd.DataFrame | None, live: pd.Index, lo: pd.Timestamp | None = None) -> pd.DataFrame:
        """``frame`` up to the cut (and before the first live row), from ``lo`` on."""
        if frame is None:
            return pd.DataFrame()
        out = frame.loc[lo: self.cut] if lo is not None else frame.loc[: self.cut]
        if len(live):
            out = out.loc[out.index < live[0]]
        return out


def _empty(market: MarketData) -> MarketData:
    """``market`` with no rows (the columns and dtypes kept)."""
    def none(frame):
        return frame.iloc[:0] if frame is not None else None

    instruments = {s: replace(i, bars=none(i.bars), trades=none(i.trades), quotes=none(i.quotes), depth=none(i.depth))
                   for s, i in market.instruments.items()}
    return MarketData(instruments, {s: f.iloc[:0] for s, f in market.funding.items()}, market.bar_minutes)


def _frame(rows: list[tuple], columns: tuple[str, ...]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(np.asarray([r[0] for r in rows], dtype=np.int64), utc=True), name="ts")
    values = np.asarray([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), len(columns))
    return pd.DataFrame(values, index=index, columns=list(columns))


def _concat(history: pd.DataFrame, live: pd.DataFrame) -> pd.DataFrame:
    if not len(history):
        return live
    if not len(live):
        return history
    shared = [c for c in history.columns if c in live.columns]
    out = pd.concat([history[shared], live[shared]])
    for column in shared:
        out[column] = out[column].astype(history[column].dtype)
    out.index.name = history.index.name
    return out
