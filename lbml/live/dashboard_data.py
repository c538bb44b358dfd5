"""What the dashboard shows, read from a paper state folder alone (read-only, no lock).

``snapshot(state_dir)`` opens ``state.sqlite`` read-only (SQLite's WAL lets a reader see the last
committed checkpoint while the session writes the next one) and reads ``status.json``. It needs no
running session: after a crash the folder still holds everything committed, and the snapshot says
the session is gone (its pid no longer runs, or its heartbeat is old).

Every number comes from the state database: the summary is its last equity row, counts are row
counts, costs are sums of the ``costs`` table (commissions of the ``fills`` table), the position is
the signed sum of the fills. ``status.json`` adds only what the database does not hold: whether the
session is alive, degraded or stalled.
"""

import json
import math
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from lbml.live.state import DB_NAME, StateError

MAX_POINTS = 1500  # equity/price points sent to the browser (evenly thinned, the last one kept)
RECENT = 20
HEARTBEAT_DEAD_S = 10.0  # a status file not rewritten for this long belongs to a dead session


def snapshot(state_dir: Path, now: float | None = None) -> dict:
    """Return the dashboard's JSON document for ``state_dir``; raise ``StateError`` if it has no state."""
    state_dir = Path(state_dir)
    now = time.time() if now is None else now
    with closing(_connect(state_dir)) as db:
        meta = {k: json.loads(v) for k, v in db.execute(
            "SELECT key, value FROM meta WHERE key IN ('session', 'checkpoint', 'edge_gate', 'metrics_url')")}
        session = meta.get("session")
        if session is None:
            raise StateError(f"{state_dir}: state folder has no session yet")
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed names
                  for t in ("equity", "fills", "trades", "signals", "drift", "liquidations")}
        last = db.execute("SELECT ts, equity, balance, close, exposure, leverage, health, liquidation_price "
                          "FROM equity ORDER BY i DESC LIMIT 1").fetchone()
        position = db.execute("SELECT COALESCE(SUM(CASE WHEN side = 'BUY' THEN quantity ELSE -quantity END), 0), "
                              "COALESCE(SUM(commission), 0) FROM fills").fetchone()
        costs = dict(db.execute("SELECT kind, SUM(amount) FROM costs GROUP BY kind ORDER BY kind").fetchall())
        step = max(1, math.ceil(counts["equity"] / MAX_POINTS))
        series = db.execute("SELECT ts, equity, close, exposure, leverage FROM equity "
                            "WHERE (i - 1) % ? = 0 OR i = (SELECT MAX(i) FROM equity) ORDER BY i", (step,)).fetchall()
        markers = db.execute("SELECT ts, side, price, exit_reason, quantity FROM fills ORDER BY i DESC LIMIT 500").fetchall()
        signals = db.execute("SELECT seq, ts, probability, close, latency_us FROM signals "
                             "ORDER BY seq DESC LIMIT ?", (RECENT,)).fetchall()
        fills = db.execute("SELECT ts, side, quantity, price, commission, order_type, exit_reason FROM fills "
                           "ORDER BY i DESC LIMIT ?", (RECENT,)).fetchall()
        trades = db.execute("SELECT opened, closed, side, quantity, entry_price, exit_price, realized_pnl, exit_reason "
                            "FROM trades ORDER BY i DESC LIMIT ?", (RECENT,)).fetchall()
        drift = db.execute("SELECT ts, n_features, n_drifted, share, flagged, detail FROM drift "
                           "ORDER BY i DESC LIMIT 10").fetchall()
        has_retrains = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'retrains'").fetchone()
        retrains = db.execute(f"SELECT {', '.join(_RETRAIN_FIELDS)} FROM retrains ORDER BY i").fetchall() \
            if has_retrains else []  # noqa: S608 - fixed names
    status = _status(state_dir, now)
    start = session.get("starting_balance")
    summary = None
    if last is not None:
        ts, equity, balance, close, exposure, leverage, health, liq = last
        summary = {"ts": ts, "equity": equity, "balance": balance, "close": close, "exposure": exposure,
                   "leverage": leverage, "health": _finite(health), "liquidation_price": _finite(liq),
                   "return": equity / start - 1.0 if start else None}
    return {
        "generated_at": now,
        "state_dir": str(state_dir),
        "session": {k: session.get(k) for k in ("scenario", "model_id", "feed", "currency", "starting_balance",
                                                 "leverage_model")},
        "edge_gate": (meta.get("edge_gate") or {}).get("status"),
        "metrics_url": meta.get("metrics_url"),
        "checkpoint_pos": (meta.get("checkpoint") or {}).get("pos", 0),
        "condition": _condition(status),
        "status": status,
        "counts": {"bars": counts["equity"], "fills": counts["fills"], "trades": counts["trades"],
                   "signals": counts["signals"], "drift_checks": counts["drift"],
                   "liquidations": counts["liquidations"]},
        "summary": summary,
        "position": position[0],
        "costs": costs | {"commission": position[1]},
        "total_costs": sum(costs.values()) + position[1],
        "series": {"ts": [r[0] for r in series], "equity": [r[1] for r in series], "close": [r[2] for r in series],
                   "exposure": [r[3] for r in series], "leverage": [r[4] for r in series]},
        "markers": [{"ts": ts, "side": side, "price": price, "exit_reason": reason or None, "quantity": q}
                    for ts, side, price, reason, q in reversed(markers)],
        "recent_signals": [dict(zip(("seq", "ts", "probability", "close", "latency_us"), r)) for r in signals],
        "recent_fills": [dict(zip(("ts", "side", "quantity", "price", "commission", "order_type", "exit_reason"), r))
                         for r in fills],
        "recent_trades": [dict(zip(("opened", "closed", "side", "quantity", "entry_price", "exit_price",
                                    "realized_pnl", "exit_reason"), r)) for r in trades],
        "drift": [_drift_row(r) for r in drift],
        "retrains": [_retrain_row(r) for r in retrains],
    }


_RETRAIN_FIELDS = ("i", "reason", "status", "trigger_ts", "trigger_bar", "window_start", "window_end",
                   "candidate_id", "old_model_id", "swap_bar", "swap_ts", "gate", "error")


def _retrain_row(row: tuple) -> dict:
    out = dict(zip(_RETRAIN_FIELDS, row))
    gate = json.loads(out["gate"]) if out["gate"] else None
    out["gate"] = None if gate is None else {"status": gate.get("status"), "reason": gate.get("reason")}
    return out


def _connect(state_dir: Path) -> sqlite3.Connection:
    path = state_dir / DB_NAME
    if not path.is_file():
        raise StateError(f"{state_dir}: not a paper state folder (no {DB_NAME})")
    uri = path.resolve().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
        db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError:
        # A folder we cannot write to (copied from a crashed host, say) has no WAL index to share:
        # read the files as they are.
        try:
            db = sqlite3.connect(f"{uri}?immutable=1", uri=True)
            db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
            return db
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a readable state database ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path}: not a readable state database ({exc})") from None


def _status(state_dir: Path, now: float) -> dict | None:
    try:
        status = json.loads((state_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    heartbeat = status.get("heartbeat")
    age = None if heartbeat is None else max(0.0, now - heartbeat)
    status["heartbeat_age_s"] = age
    status["alive"] = (status.get("state") != "stopped" and age is not None and age < HEARTBEAT_DEAD_S
                       and _pid_running(status.get("pid")))
    return status


def _pid_running(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _condition(status: dict | None) -> str:
    """One word for the session: live, replaying, degraded, stalled, stopped, dead or unknown."""
    if status is None:
        return "unknown"
    if status.get("state") == "stopped":
        return "stopped"
    if not status["alive"]:
        return "dead"
    if status.get("feed_stalled"):
        return "stalled"
    if status.get("degraded"):
        return "degraded"
    return "replaying" if status.get("replaying") else status.get("state", "unknown")


def _drift_row(row: tuple) -> dict:
    ts, n_features, n_drifted, share, flagged, detail = row
    features = json.loads(detail) if detail else {}
    drifted = sorted(name for name, d in features.items() if d.get("drift"))
    return {"ts": ts, "n_features": n_features, "n_drifted": n_drifted, "share": share, "flagged": bool(flagged),
            "drifted": drifted}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
