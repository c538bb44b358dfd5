"""The state keeper: commits the session at every bar and fill, and checks recovery replays.

The keeper does not observe the engine on its own: the feed calls ``on_item(pos, event)`` after an
item and everything it caused have been processed, and the keeper then commits what the run
recorder, the signal actor and the cost modules produced since the last commit.

A restarted session replays the items it had processed (positions ``<= resume_pos``). While it does,
the keeper writes nothing: it compares every regenerated fill, closed trade, equity row and signal
with the stored one, and at ``resume_pos`` the whole snapshot (balance, open position, open orders,
cost ledgers, signal number) with the stored checkpoint. Any difference stops the session with a
``StateError``: resuming from a state that cannot be reproduced would be silent corruption.
Client order ids are excluded from the comparison: nautilus derives them from the wall clock.

A commit that fails (a full disk: ``StorageError`` from the store, ``OSError`` from a file next to
it) stops the session through ``on_error`` and nothing more is committed: the database keeps the last
good checkpoint, and a restart resumes from there.
"""

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lbml.atomic import write_atomic
from lbml.errors import LbmlError, StorageError, is_no_space
from lbml.live.events import MarketEvent
from lbml.live.state import (
    COST_COLUMNS, EQUITY_COLUMNS, FILL_COLUMNS, LIQUIDATION_COLUMNS, TRADE_COLUMNS, StateError, StateStore,
)
from lbml.nautilus.model import InstrumentId, PositionSide, order_side_to_str, order_status_to_str, order_type_to_str
from lbml.nautilus.trading import Actor, ActorConfig, cash_balance


class StateKeeperConfig(ActorConfig, frozen=True):
    instrument_id: InstrumentId
    journal_events: bool = False
    equity_csv_every_bars: int = 60


class StateKeeper(Actor):
    """Durable checkpoints at every bar and fill; verification while a restart replays."""

    def __init__(
        self,
        config: StateKeeperConfig,
        store: StateStore,
        recorder,
        venue,
        status,
        drift=None,
        on_error: Callable[[str | LbmlError], None] | None = None,
        guard=None,
    ) -> None:
        super().__init__(config)
        self._store = store
        self._recorder = recorder
        self.signal_latencies_ns: Sequence[int] = []  # the SignalActor's latencies, bound by the node builder
        self.on_signals_committed: Callable[[list[tuple]], None] | None = None  # e.g. the metrics' latency histogram
        self._venue = venue
        self._status = status
        self._drift = drift
        self._guard = guard
        self._on_error = on_error
        stored = store.get("checkpoint")
        self.resume_pos = stored["pos"] if stored else 0
        self._stored_snapshot = stored
        self._done = {"fills": 0, "trades": 0, "equity": 0, "costs": 0, "liquidations": 0, "signals": 0}
        self._ledger_done = dict.fromkeys(cost_ledgers(venue), 0)
        self._stored_counts = {k: store.count(k) for k in self._done}
        self._signals: list[list] = []  # [seq, ts, probability, close]
        self._journal: list[tuple] = []
        self._bars: list[tuple] = []
        self._seq = 0
        self.error: str | None = None
        self._last_pos = self.resume_pos
        self._committed_pos = self.resume_pos
        status.last_durable_signal_seq = self._stored_counts["signals"]
        status.replaying = self.resume_pos > 0
        status.state = "replaying" if status.replaying else "live"

    @property
    def committed_pos(self) -> int:
        """The last item whose effects are durably in the state database."""
        return self._committed_pos

    # -- inputs ---------------------------------------------------------------------------------
    def on_prediction(self, prediction, features: np.ndarray) -> None:
        self._seq += 1
        self._signals.append([self._seq, prediction.ts_event, prediction.probability, prediction.close])
        if self._drift is not None and self.error is None:
            try:
                self._drift.add(prediction.ts_event, features)
            except OSError as exc:
                self._fail(self._failure(exc))

    def on_bar(self, pos: int, bar: tuple) -> None:
        """A bar item ``pos`` (``(symbol, ts, open, high, low, close, volume, taker_buy_volume)``) was
        delivered: stored with the commit of that item (a replayed one is stored already)."""
        if self.error is None and self.is_running and pos > self.resume_pos:
            symbol, ts, o, h, low, c, v, taker_buy = bar
            self._bars.append((pos, symbol, ts, o, h, low, c, v, _finite_or_none(taker_buy)))

    def on_item(self, pos: int, event: MarketEvent | None) -> None:
        if self.error is not None:
            return
        if not self.is_running:  # after on_stop the other actors ignore items: nothing to commit
            return
        self._last_pos = pos
        if self.config.journal_events and event is not None and pos > self.resume_pos:
            self._journal.append((pos, event.kind, event.symbol, event.ts, event.a, event.b, event.c, event.d))
        new_fills = len(self._recorder.record.fills) > self._done["fills"]
        if event is not None and not new_fills and pos != self.resume_pos:
            return
        try:
            if pos <= self.resume_pos:
                self._verify(pos)
            else:
                self._commit(pos)
        except (_Diverged, LbmlError, OSError) as exc:
            self._fail(self._failure(exc))

    def _failure(self, exc: Exception) -> LbmlError:
        if isinstance(exc, LbmlError):
            return exc
        if is_no_space(exc):
            return StorageError(f"{self._store.dir}: writing failed ({exc.strerror}); the state keeps its last "
                                f"commit (item {self._committed_pos})")
        if isinstance(exc, OSError):
            return StateError(f"{self._store.dir}: writing failed ({exc}); the state keeps its last commit "
                              f"(item {self._committed_pos})")
        return StateError(str(exc))

    def _fail(self, error: LbmlError) -> None:
        """Stop committing and ask the session to stop (the first failure is the one reported)."""
        if self.error is not None:
            return
        self.error = str(error)
        if self._on_error is not None:
            self._on_error(error)

    def on_stop(self) -> None:
        # Commit the processed tail (journaled events) only if nothing durable is pending: the stop
        # may interrupt the item after _last_pos midway, and its effects belong to that item.
        rec = self._recorder.record
        quiet = (len(rec.fills) == self._done["fills"] and len(rec.equity) == self._done["equity"]
                 and len(rec.positions) == self._done["trades"] and not self._signals)
        try:
            if self.error is None and not self._status.replaying and quiet and self._last_pos > self._committed_pos:
                self._commit(self._last_pos)
            if self.error is None:
                self._write_equity_csv()
        except (LbmlError, OSError) as exc:
            self._fail(self._failure(exc))

    def _cost_totals(self) -> tuple[float, float]:
        """Borrow and slippage so far; slippage includes gap-through charges, as backtest metrics do."""
        ledgers = cost_ledgers(self._venue)
        return ledgers["borrow"].total, ledgers["slippage"].total + ledgers["gap_slippage"].total

    def _new_costs(self) -> list[tuple]:
        """Charges made since the last call, ledger by ledger (each in time order)."""
        rows = []
        for kind, ledger in cost_ledgers(self._venue).items():
            start = self._ledger_done[kind]
            rows += [(ts, kind, amount) for ts, amount in ledger.entries[start:]]
            self._ledger_done[kind] = len(ledger.entries)
        return rows

    def _liquidation_events(self) -> list[dict]:
        module = self._venue.leverage.liquidation
        return module.events if module is not None else []

    # -- commit ---------------------------------------------------------------------------------
    def _new_rows(self, pos: int) -> dict[str, list[tuple]]:
        rec = self._recorder.record
        d = self._done
        fills = [(pos, *(f[c] for c in FILL_COLUMNS)) for f in rec.fills[d["fills"]:]]
        trades = [tuple(t[c] for c in TRADE_COLUMNS) for t in rec.positions[d["trades"]:]]
        borrow, slippage = self._cost_totals()
        equity = [
            (ts, eq, bal, close, borrow, slippage, *(_finite_or_none(v) for v in risk[1:]))
            for (ts, eq, bal, close), risk in zip(rec.equity[d["equity"]:], rec.risk[d["equity"]:])
        ]
        liquidations = [tuple(e[c] for c in LIQUIDATION_COLUMNS) for e in self._liquidation_events()[d["liquidations"]:]]
        signals = []
        for seq, ts, prob, close in self._signals:
            latency = self.signal_latencies_ns[seq - 1] / 1e3 if seq - 1 < len(self.signal_latencies_ns) else None
            signals.append((seq, ts, prob, close, latency))
        self._signals = []
        return {"fills": fills, "trades": trades, "equity": equity, "costs": self._new_costs(),
                "liquidations": liquidations, "signals": signals}

    def _advance(self, rows: dict[str, list[tuple]], pos: int) -> None:
        for key, values in rows.items():
            self._done[key] += len(values)
        status = self._status
        status.items = pos
        status.bars = self._done["equity"]
        status.fills = self._done["fills"]
        status.last_signal_seq = self._seq
        if rows["signals"]:
            last = rows["signals"][-1]
            status.last_probability = last[2]
            status.bar_latency_us = last[4]
        rec = self._recorder.record
        if rec.equity:
            ts, equity, balance, close = rec.equity[-1]
            status.market_ts, status.equity, status.balance = ts, equity, balance
            status.position = self._position()
            _, exposure, leverage, health, _ = rec.risk[-1]
            status.exposure, status.leverage = exposure, leverage
            status.health_factor = health if math.isfinite(health) else None

    def _commit(self, pos: int) -> None:
        if self._status.replaying:
            self._finish_replay()
        rows = self._new_rows(pos)
        drift = self._drift.take_reports() if self._drift is not None else []
        guard = self._guard.take_new_decisions() if self._guard is not None else []
        self._store.checkpoint(checkpoint=self._snapshot(pos), journal=self._journal, bars=self._bars, drift=drift,
                               guard=guard, **rows)
        self._journal = []
        self._bars = []
        self._committed_pos = pos
        self._advance(rows, pos)
        if rows["signals"] and self.on_signals_committed is not None:
            self.on_signals_committed(rows["signals"])
        if rows["equity"] and self._done["equity"] % self.config.equity_csv_every_bars == 0:
            self._write_equity_csv()

    # -- verification during a recovery replay --------------------------------------------------
    def _verify(self, pos: int) -> None:
        rows = self._new_rows(pos)
        if self._drift is not None:
            self._drift.take_reports()  # already stored by the first run
        for table, new in rows.items():
            start = self._done[table]
            stored = self._store.rows(table, _COMPARED[table], start, limit=len(new)) if new else []
            for i, row in enumerate(new):
                if i >= len(stored):
                    raise _Diverged(f"recovery produced {table} row {start + i + 1} that the state never had")
                mine = tuple(row[j] for j in _ROW_INDEX[table])
                if not _same(mine, stored[i]):
                    raise _Diverged(f"recovery diverged at {table} row {start + i + 1}: {mine} != {tuple(stored[i])}")
        self._advance(rows, pos)
        if pos == self.resume_pos:
            self._finish_replay()

    def _finish_replay(self) -> None:
        if not self._status.replaying:
            return
        for table, n in self._stored_counts.items():
            if self._done[table] != n:
                raise _Diverged(f"recovery rebuilt {self._done[table]} {table} rows, the state has {n}")
        mine = self._snapshot(self.resume_pos)
        stored = self._stored_snapshot
        for key in _SNAPSHOT_KEYS:
            if not _same_value(mine[key], stored[key]):
                raise _Diverged(f"recovery diverged: {key} {mine[key]} != stored {stored[key]}")
        self._status.replaying = False
        self._status.state = "live"
        self.log.info(f"recovered {self.resume_pos} items, {self._done['fills']} fills, {self._seq} signals")

    # -- snapshots ------------------------------------------------------------------------------
    def _position(self) -> float:
        total = 0.0
        for p in self.cache.positions_open(instrument_id=self.config.instrument_id):
            total += p.quantity.as_double() * (1.0 if p.side == PositionSide.LONG else -1.0)
        return total

    def _snapshot(self, pos: int) -> dict:
        iid = self.config.instrument_id
        account = self.portfolio.account(iid.venue)
        balance = cash_balance(account) if account else None
        positions = [
            [("LONG" if p.side == PositionSide.LONG else "SHORT"), p.quantity.as_double(), p.avg_px_open, p.ts_opened]
            for p in self.cache.positions_open(instrument_id=iid)
        ]
        orders = sorted(
            [order_type_to_str(o.order_type), order_side_to_str(o.side), o.quantity.as_double(),
             _price(o), order_status_to_str(o.status), bool(o.is_reduce_only), o.client_order_id.value]
            for o in self.cache.orders_open(instrument_id=iid)
        )
        return {
            "pos": pos,
            "signal_seq": self._seq,
            "balance": balance,
            "positions": positions,
            "open_orders": [o[:-1] for o in orders],
            "open_order_ids": [o[-1] for o in orders],
            "borrow": self._cost_totals()[0],
            "slippage": self._cost_totals()[1],
            "costs": {kind: ledger.total for kind, ledger in cost_ledgers(self._venue).items()},
            "n_liquidations": len(self._liquidation_events()),
            "fills": len(self._recorder.record.fills),
            "model_calls": self._guard.calls if self._guard is not None else None,
            # the exposure-cap invariant as the recorder checked it on every bar (lbml report reads it)
            "max_exposure": self._recorder.record.max_exposure,
            "exposure_caps": list(self._recorder.record.exposure_caps or ()),
        }

    def _write_equity_csv(self) -> None:
        rec = self._recorder.record
        if not rec.equity:
            return
        write_atomic(Path(self._store.dir) / "equity.csv", rec.equity_frame().to_csv())


class _Diverged(Exception):
    pass


def cost_ledgers(venue) -> dict:
    """Every cost ledger of the venue modules, by the name the backtest's ledgers.csv uses."""
    lev = venue.leverage
    return {
        "borrow": lev.ledger(lev.borrow),
        "slippage": venue.slippage.ledger,
        "gap_slippage": venue.gaps.ledger,
        "funding": lev.ledger(lev.funding),
        "liquidation_penalty": lev.ledger(lev.liquidation),
        "gas": venue.gas.ledger,
    }


def _finite_or_none(value: float) -> float | None:
    """NaN as None (SQLite stores NaN as NULL); infinities are kept."""
    return None if value != value else value


_COMPARED = {
    "fills": ("pos", "ts", "side", "quantity", "price", "commission", "liquidity", "order_type"),
    "trades": TRADE_COLUMNS,
    "equity": EQUITY_COLUMNS,
    "costs": COST_COLUMNS,
    "liquidations": ("ts", "side", "quantity", "price", "penalty"),
    "signals": ("seq", "ts", "probability", "close"),
}
# Index of each compared column in the rows _new_rows builds (fills and liquidations skip the
# wall-clock-derived order id; signals skip the latency).
_ROW_INDEX = {
    "fills": (0, 1, 3, 4, 5, 6, 7, 8),
    "trades": tuple(range(len(TRADE_COLUMNS))),
    "equity": tuple(range(len(EQUITY_COLUMNS))),
    "costs": (0, 1, 2),
    "liquidations": (0, 2, 3, 4, 5),
    "signals": (0, 1, 2, 3),
}
_SNAPSHOT_KEYS = ("signal_seq", "balance", "positions", "open_orders", "borrow", "slippage", "costs",
                  "n_liquidations", "fills", "model_calls", "max_exposure", "exposure_caps")


def _price(order) -> float | None:
    for attr in ("price", "trigger_price"):
        value = getattr(order, attr, None)
        if value is not None:
            return value.as_double()
    return None


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))


def _same_value(x, y) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        if x is None or y is None:
            return x is y
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return _same(tuple(x), tuple(y))
    return x == y

