"""``lbml report STATE_DIR``: a paper session's metrics and tearsheet, as for a backtest run folder.

The stored fills, closed trades, per-bar equity and risk, every cost-ledger charge and the
liquidations are turned back into the ``BacktestResult`` the backtest reports are computed from, so
``metrics.json`` (equity reconciliation and cost breakdown included), ``equity.png``,
``tearsheet.html``, ``risk.png``, ``ledgers.csv`` and ``liquidations.csv`` come from the very same
code. Output goes to ``STATE_DIR/report/`` (replaced atomically on every call). ``metrics.json``
also counts the live feed messages the feed guard quarantined (``feed_quarantine``, by reason, from
``STATE_DIR/quarantine.jsonl``). The metrics carry the
exposure cap the session was held to and its largest exposure, as the recorder checked them on every
bar (kept in the checkpoint, a breach at once); a session that broke the cap gets no report but ``InvariantError``
(exit 3), as a backtest run does. A session with ``[paper.retrain]`` also gets ``retrains`` in
``metrics.json`` (every row of the state's ``retrains`` table) and ``retrains.csv``; ``model_id``
stays the model the session started with and ``model_id_final`` is the one trading at the end.
"""

from collections import defaultdict
from pathlib import Path

import pandas as pd

from lbml.atomic import atomic_folder
from lbml.research.gate import OVERRIDDEN, OVERRIDE_STAMP
from lbml.engine.backtest import BacktestResult
from lbml.engine.costs import CostLedger
from lbml.engine.recorder import RunRecord
from lbml.live.quarantine import FILE_NAME as QUARANTINE_FILE, quarantine_counts
from lbml.errors import InvariantError
from lbml.live.state import (
    BREACH_KEY,
    COST_COLUMNS,
    EQUITY_COLUMNS,
    FILL_COLUMNS,
    LIQUIDATION_COLUMNS,
    TRADE_COLUMNS,
    StateError,
    StateStore,
)
from lbml.report.metrics import compute_metrics
from lbml.report.runfolder import write_reports, write_run_tables


def result_from_state(store: StateStore) -> tuple[BacktestResult, dict]:
    """Rebuild the backtest-shaped result of a paper session up to its last equity row."""
    session = store.get("session")
    if session is None:
        raise StateError(f"{store.dir}: state folder has no session")
    equity_rows = store.rows("equity", EQUITY_COLUMNS)
    if not equity_rows:
        raise StateError(f"{store.dir}: the session has not completed a bar yet")
    last_ts, last_balance = equity_rows[-1][0], equity_rows[-1][2]
    fills = [dict(zip(FILL_COLUMNS, r)) for r in store.rows("fills", FILL_COLUMNS) if r[0] <= last_ts]
    trades = [dict(zip(TRADE_COLUMNS, r)) for r in store.rows("trades", TRADE_COLUMNS) if r[1] <= last_ts]
    signals = store.rows("signals", ("ts", "probability", "latency_us"))
    ledgers: dict[str, CostLedger] = defaultdict(CostLedger)
    for ts, kind, amount in store.rows("costs", COST_COLUMNS):
        if ts <= last_ts:
            ledgers[kind].add(ts, amount)
    liquidations = [dict(zip(LIQUIDATION_COLUMNS, r)) for r in store.rows("liquidations", LIQUIDATION_COLUMNS)
                    if r[0] <= last_ts]
    risk = [(ts, exposure, leverage, _nan(health), _nan(liq))
            for ts, *_, exposure, leverage, health, liq in equity_rows]
    checkpoint = store.get("checkpoint") or {}
    caps = checkpoint.get("exposure_caps")
    record = RunRecord(equity=[r[:4] for r in equity_rows], fills=fills, positions=trades, risk=risk,
                       max_exposure=checkpoint.get("max_exposure", 0.0), exposure_caps=tuple(caps) if caps else None,
                       breach=store.get(BREACH_KEY))
    result = BacktestResult(
        record=record,
        borrow=ledgers["borrow"],
        slippage=ledgers["slippage"],
        gap_slippage=ledgers["gap_slippage"],
        funding=ledgers["funding"],
        liquidation=ledgers["liquidation_penalty"],
        gas=ledgers["gas"],
        n_liquidations=len({e["order_id"] for e in liquidations}),
        liquidations=liquidations,
        leverage_model=session.get("leverage_model", "none"),
        starting_balance=session["starting_balance"],
        final_balance=last_balance,
        currency=session.get("currency", "USDT"),
        mode="paper",
        n_events=int(checkpoint.get("pos", 0)),
        n_bars=len(equity_rows),
        n_predictions=len(signals),
        predictions=[(ts, p) for ts, p, _ in signals],
        latencies_ns=[int(lat * 1e3) for _, _, lat in signals if lat is not None],
        strategy_report=store.get("strategy_report") or {},
    )
    return result, session


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def retrain_lines(retrains: list[dict]) -> list[str]:
    """One line per retrain of a session (``lbml report`` prints them)."""
    lines = []
    for r in retrains:
        when = pd.Timestamp(r["trigger_ts"], tz="UTC").strftime("%Y-%m-%d %H:%M")
        gate = r.get("gate") or {}
        verdict = f", gate {gate['status']}" + (f" ({gate['reason']})" if gate.get("reason") else "") if gate else ""
        models = f", model {r['old_model_id']} -> {r['candidate_id']}" if r.get("candidate_id") else ""
        swap = f", trades from bar {r['swap_bar']}" if r.get("swap_bar") else ""
        error = f": {r['error']}" if r.get("error") else ""
        lines.append(f"retrain {r['i']} ({r['reason']}, bar {r['trigger_bar']}, {when}): {r['status']}{error}"
                     f"{verdict}{models}{swap}")
    return lines


def write_report(state_dir: Path) -> tuple[Path, dict]:
    """Write ``STATE_DIR/report/`` and return its path and the metrics."""
    store = StateStore.open_existing(state_dir)
    try:
        result, session = result_from_state(store)
        # A session that broke its exposure cap fails its report as a backtest fails its run (exit 3).
        breach = result.record.breach
        if breach is not None:
            raise InvariantError(f"{state_dir}: {breach}")
        look_ahead = store.get("look_ahead_check")
        edge_gate = store.get("edge_gate")
        retrains = store.retrains()
        data = store.get("data")
    finally:
        store.close()
    final = Path(state_dir) / "report"
    with atomic_folder(final, replace=True) as tmp:
        write_run_tables(tmp, result)
        equity = result.record.equity_frame()
        periods = session.get("periods_per_year", 365)
        metrics = compute_metrics(result, periods)
        metrics |= {
            "scenario": session["scenario"],
            "scenario_hash": session["scenario_hash"],
            "model_id": session["model_id"],
            "feed": session["feed"],
            "paper_window": {"start": equity.index[0], "end": equity.index[-1]},
            "in_sample": False,
        }
        if look_ahead is not None:
            metrics["look_ahead_check"] = look_ahead
        if retrains:  # [paper.retrain]: every retrain, its gate verdict and where an accepted one went in
            metrics["retrains"] = retrains
            pd.DataFrame(retrains).assign(gate=[r["gate"]["status"] if r["gate"] else None for r in retrains]) \
                .to_csv(tmp / "retrains.csv", index=False)
            accepted = [r for r in retrains if r["status"] == "accepted"]
            metrics["model_id_final"] = accepted[-1]["candidate_id"] if accepted else session["model_id"]
        quarantined = quarantine_counts(state_dir)
        metrics["feed_quarantine"] = {"total": sum(quarantined.values()),
                                      "by_reason": dict(sorted(quarantined.items(), key=lambda kv: -kv[1])),
                                      "journal": QUARANTINE_FILE}
        if result.strategy_report:
            metrics["strategy_report"] = result.strategy_report
        if data is not None:
            metrics["data"] = data
        title = f"{session['scenario']} (paper)"
        if edge_gate is not None:
            metrics["edge_gate"] = edge_gate
            if edge_gate["status"] == OVERRIDDEN:
                metrics["report_stamp"] = OVERRIDE_STAMP
                (tmp / OVERRIDE_STAMP).write_text(edge_gate["reason"] + "\n")
                title = f"{OVERRIDE_STAMP}: {title}"
        # Sessions shorter than a few days get an hourly returns histogram (a daily one needs whole days).
        short = len(equity) < 2 or equity.index[-1] - equity.index[0] < pd.Timedelta(days=3)
        write_reports(tmp, result, metrics, title, tearsheet=session.get("tearsheet", True),
                      periods_per_year=periods, freq="1h" if short else "1D")
    return final, metrics
