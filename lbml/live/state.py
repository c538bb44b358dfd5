"""Durable paper-trading state: one SQLite database in WAL mode, committed at every fill and bar.

``STATE_DIR/state.sqlite`` holds

- ``meta``: the session (scenario and model identity, feed, start) and the latest checkpoint:
  last processed item position, signal sequence number, and a snapshot of balances, the open
  position, open orders and the borrow/slippage ledgers;
- ``fills``, ``trades`` (closed positions), ``equity`` (one mark-to-market row per bar, with the
  borrow/slippage totals and the risk of the position at that bar: exposure, leverage, health
  factor, liquidation price), ``costs`` (every charge of every venue cost module: borrow or lending
  interest, slippage, gap-through, funding, liquidation penalty, gas), ``liquidations``,
  ``signals`` (one row per prediction, numbered 1, 2, ...), ``bars`` (every bar the session built
or was fed, of every symbol, with the item that delivered it: with the journal, the data a live
session's retrains train on),
  ``drift`` (Kolmogorov-Smirnov reports), ``model_guard`` (predictions withheld from a failing
  or slow model), ``journal`` (events of feeds that cannot be rewound) and ``retrains`` (one row
  per retrain of ``[paper.retrain]``: trigger, window, candidate, gate verdict and, when the
  candidate went in, the item after which it trades; ``lbml.live.retrain``).

Commits use ``synchronous=FULL``: a committed checkpoint survives ``kill -9`` and power loss. A
commit that fails (a full disk) is rolled back whole and raises ``StorageError``: the database keeps
the last committed checkpoint, and a later run resumes from it.
"""

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from lbml.engine.recorder import FILL_COLUMNS, TRADE_COLUMNS
from lbml.errors import LbmlError, StorageError, is_no_space

DB_NAME = "state.sqlite"
SCHEMA_VERSION = 5  # 3: fills and trades say why a position closed (exit_reason); 4: exposure cap in the checkpoint;
# 5: the bars the session built (retrain windows of live feeds)
EQUITY_COLUMNS = ("ts", "equity", "balance", "close", "borrow", "slippage",
                  "exposure", "leverage", "health", "liquidation_price")
COST_COLUMNS = ("ts", "kind", "amount")
BREACH_KEY = "exposure_breach"  # meta key: the first bar that broke the exposure cap (lbml.engine.recorder)
LIQUIDATION_COLUMNS = ("ts", "order_id", "side", "quantity", "price", "penalty")
BAR_COLUMNS = ("pos", "symbol", "ts", "open", "high", "low", "close", "volume", "taker_buy_volume")
RETRAIN_COLUMNS = ("i", "reason", "trigger_pos", "trigger_bar", "trigger_ts", "window_start", "window_end", "started",
                   "status", "finished", "candidate_id", "candidate_path", "gate", "old_model_id", "old_model_path",
                   "swap_pos", "swap_bar", "swap_ts", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    i INTEGER PRIMARY KEY, pos INTEGER, ts INTEGER, order_id TEXT, side TEXT, quantity REAL,
    price REAL, commission REAL, liquidity TEXT, order_type TEXT, liquidation INTEGER, exit_reason TEXT);
CREATE TABLE IF NOT EXISTS trades (
    i INTEGER PRIMARY KEY, opened INTEGER, closed INTEGER, side TEXT, quantity REAL,
    entry_price REAL, exit_price REAL, realized_pnl REAL, duration_min REAL, exit_reason TEXT);
CREATE TABLE IF NOT EXISTS equity (
    i INTEGER PRIMARY KEY, ts INTEGER, equity REAL, balance REAL, close REAL,
    borrow REAL, slippage REAL, exposure REAL, leverage REAL, health REAL, liquidation_price REAL);
CREATE TABLE IF NOT EXISTS costs (i INTEGER PRIMARY KEY, ts INTEGER, kind TEXT, amount REAL);
CREATE TABLE IF NOT EXISTS liquidations (
    i INTEGER PRIMARY KEY, ts INTEGER, order_id TEXT, side TEXT, quantity REAL, price REAL, penalty REAL);
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY, ts INTEGER, probability REAL, close REAL, latency_us REAL);
CREATE TABLE IF NOT EXISTS drift (
    i INTEGER PRIMARY KEY, ts INTEGER, n_features INTEGER, n_drifted INTEGER, share REAL,
    flagged INTEGER, detail TEXT);
CREATE TABLE IF NOT EXISTS model_guard (call INTEGER PRIMARY KEY, decision TEXT);
CREATE TABLE IF NOT EXISTS retrains (
    i INTEGER PRIMARY KEY, reason TEXT, trigger_pos INTEGER, trigger_bar INTEGER, trigger_ts INTEGER,
    window_start INTEGER, window_end INTEGER, started REAL, status TEXT, finished REAL,
    candidate_id TEXT, candidate_path TEXT, gate TEXT, old_model_id TEXT, old_model_path TEXT,
    swap_pos INTEGER, swap_bar INTEGER, swap_ts INTEGER, error TEXT);
CREATE TABLE IF NOT EXISTS bars (
    i INTEGER PRIMARY KEY, pos INTEGER, symbol TEXT, ts INTEGER, open REAL, high REAL, low REAL, close REAL,
    volume REAL, taker_buy_volume REAL);
CREATE TABLE IF NOT EXISTS journal (
    pos INTEGER PRIMARY KEY, kind INTEGER, symbol TEXT, ts INTEGER, a REAL, b REAL, c REAL, d REAL);
"""



_ORDER_KEYS = {"signals": "seq", "journal": "pos", "model_guard": "call"}
_SPARSE_KEYS = {"journal", "model_guard"}  # keyed by item / call number, with gaps


class StateError(LbmlError):
    """A state folder is unusable: another session's, corrupt, or its recovery diverged."""


class StateStore:
    """The state database of one paper session."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            if is_no_space(exc):
                raise StorageError(f"{self.path}: cannot open the state database ({exc})") from None
            raise StateError(f"{self.path}: not a usable state database ({exc})") from None
        version = self.get("schema_version")
        if version is None and self.get("session") is None:
            self.put("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            self._db.close()
            raise StateError(f"{self.path}: state schema {version or 1} was written by another lbml version "
                             f"(this one reads schema {SCHEMA_VERSION}); start a new --state folder")

    @classmethod
    def open_existing(cls, state_dir: Path) -> "StateStore":
        path = Path(state_dir) / DB_NAME
        if not path.is_file():
            raise StateError(f"{state_dir}: not a paper state folder (no {DB_NAME})")
        return cls(state_dir)

    def close(self) -> None:
        self._db.close()

    # -- meta ----------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put(self, key: str, value: Any) -> None:
        with self._transaction(f"storing {key}"):
            self._put(key, value)

    def _put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    # -- reading -------------------------------------------------------------------------------
    def count(self, table: str) -> int:
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names

    def rows(self, table: str, columns: tuple[str, ...], start: int = 0, limit: int | None = None) -> list[tuple]:
        """Rows in order, skipping the first ``start`` (tables numbered 1, 2, ...: an index seek)."""
        key = _ORDER_KEYS.get(table, "i")
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?"  # noqa: S608
        if table in _SPARSE_KEYS and start:
            raise ValueError(f"{table} is keyed sparsely: read it whole or with iter_rows")
        return self._db.execute(sql, (start, -1 if limit is None else limit)).fetchall()

    def first_and_last(self, table: str, column: str) -> tuple[Any, Any]:
        """``column`` of the first and the last row in order (None, None for an empty table)."""
        key = _ORDER_KEYS.get(table, "i")
        first, last = (self._db.execute(f"SELECT {column} FROM {table} ORDER BY {key} {order} LIMIT 1").fetchone()  # noqa: S608
                       for order in ("ASC", "DESC"))
        return (first[0], last[0]) if first else (None, None)

    def iter_rows(self, table: str, columns: tuple[str, ...], batch: int = 10_000) -> Iterator[tuple]:
        """All rows in order, read ``batch`` at a time (a long session's journal need not fit in memory)."""
        key = _ORDER_KEYS.get(table, "i")
        sql = f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?"  # noqa: S608
        last = -1
        while True:
            page = self._db.execute(sql, (last, batch)).fetchall()
            for row in page:
                yield row[1:]
            if len(page) < batch:
                return
            last = page[-1][0]

    # -- retrains -------------------------------------------------------------------------------
    def retrains(self) -> list[dict[str, Any]]:
        """Every retrain row in order, as dicts (``gate`` parsed)."""
        rows = self._db.execute(f"SELECT {', '.join(RETRAIN_COLUMNS)} FROM retrains ORDER BY i").fetchall()  # noqa: S608
        out = [dict(zip(RETRAIN_COLUMNS, row)) for row in rows]
        for row in out:
            row["gate"] = json.loads(row["gate"]) if row["gate"] else None
        return out

    def put_retrain(self, row: dict[str, Any]) -> None:
        """Insert or replace retrain row ``row["i"]`` durably (one transaction)."""
        values = dict(row)
        if values.get("gate") is not None:
            values["gate"] = json.dumps(values["gate"], sort_keys=True)
        columns = [c for c in RETRAIN_COLUMNS if c in values]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(f"INSERT OR REPLACE INTO retrains({', '.join(columns)}) "  # noqa: S608
                             f"VALUES ({', '.join('?' * len(columns))})", [values[c] for c in columns])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- the checkpoint ------------------------------------------------------------------------
    def checkpoint(
        self,
        *,
        checkpoint: dict[str, Any],
        fills: list[tuple] = (),
        trades: list[tuple] = (),
        equity: list[tuple] = (),
        costs: list[tuple] = (),
        liquidations: list[tuple] = (),
        signals: list[tuple] = (),
        journal: list[tuple] = (),
        bars: list[tuple] = (),
        drift: list[tuple] = (),
        guard: list[tuple] = (),
    ) -> None:
        """Append rows and replace the checkpoint in one durable transaction."""
        db = self._db
        with self._transaction(f"committing item {checkpoint.get('pos')}"):
            if fills:
                db.executemany(f"INSERT INTO fills(pos, {', '.join(FILL_COLUMNS)}) VALUES ({', '.join('?' * (len(FILL_COLUMNS) + 1))})", fills)
            if trades:
                db.executemany(f"INSERT INTO trades({', '.join(TRADE_COLUMNS)}) VALUES ({', '.join('?' * len(TRADE_COLUMNS))})", trades)
            if equity:
                db.executemany(f"INSERT INTO equity({', '.join(EQUITY_COLUMNS)}) VALUES ({', '.join('?' * len(EQUITY_COLUMNS))})", equity)
            if costs:
                db.executemany("INSERT INTO costs(ts, kind, amount) VALUES (?,?,?)", costs)
            if liquidations:
                db.executemany(f"INSERT INTO liquidations({', '.join(LIQUIDATION_COLUMNS)}) VALUES (?,?,?,?,?,?)", liquidations)
            if signals:
                db.executemany("INSERT INTO signals(seq, ts, probability, close, latency_us) VALUES (?,?,?,?,?)", signals)
            if journal:
                db.executemany("INSERT INTO journal(pos, kind, symbol, ts, a, b, c, d) VALUES (?,?,?,?,?,?,?,?)", journal)
            if bars:
                db.executemany(f"INSERT INTO bars({', '.join(BAR_COLUMNS)}) VALUES ({', '.join('?' * len(BAR_COLUMNS))})", bars)
            if drift:
                db.executemany("INSERT INTO drift(ts, n_features, n_drifted, share, flagged, detail) VALUES (?,?,?,?,?,?)", drift)
            if guard:
                db.executemany("INSERT INTO model_guard(call, decision) VALUES (?,?)", guard)
            self._put("checkpoint", checkpoint)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One durable transaction; on any failure it is rolled back whole and the database keeps what
        it held before. A database error (a full disk) becomes one ``StateError`` line."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:  # SQLite may have rolled back already (e.g. on a full disk)
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                try:
                    last = self.get("checkpoint")
                except sqlite3.Error:
                    last = None
                kept = f"item {last['pos']}" if last else "no checkpoint yet"
                error = StorageError if is_no_space(exc) else StateError
                raise error(f"{self.path}: {what} failed ({exc}); nothing of it was written, the state "
                            f"keeps its last commit ({kept})") from None
            raise
