"""``lbml report STATE_DIR``: a paper session's metrics and tearsheet, as for a backtest run folder.

The stored fills, closed trades, per-bar equity and cost-ledger totals are turned back into the
``BacktestResult`` the backtest reports are computed from, so ``metrics.json`` (including the
equity reconciliation), ``equity.png`` and ``tearsheet.html`` come from the very same code. Output
goes to ``STATE_DIR/report/`` (replaced atomically on every call).
"""

from pathlib import Path

import pandas as pd

from lbml.atomic import atomic_folder
from lbml.engine.backtest import BacktestResult
from lbml.engine.costs import CostLedger
from lbml.engine.recorder import RunRecord
from lbml.live.state import FILL_COLUMNS, TRADE_COLUMNS, StateError, StateStore
from lbml.report.metrics import compute_metrics
from lbml.report.plots import plot_equity
from lbml.report.runfolder import write_json, write_run_tables
from lbml.report.tearsheet import tearsheet_skip_reason, write_tearsheet


def result_from_state(store: StateStore) -> tuple[BacktestResult, dict]:
    """Rebuild the backtest-shaped result of a paper session up to its last equity row."""
    session = store.get("session")
    if session is None:
        raise StateError(f"{store.dir}: state folder has no session")
    equity_rows = store.rows("equity", ("ts", "equity", "balance", "close", "borrow", "slippage"))
    if not equity_rows:
        raise StateError(f"{store.dir}: the session has not completed a bar yet")
    last_ts, _, last_balance, _, borrow, slippage = equity_rows[-1]
    fills = [dict(zip(FILL_COLUMNS, r)) for r in store.rows("fills", FILL_COLUMNS) if r[0] <= last_ts]
    trades = [dict(zip(TRADE_COLUMNS, r)) for r in store.rows("trades", TRADE_COLUMNS) if r[1] <= last_ts]
    signals = store.rows("signals", ("ts", "probability", "latency_us"))
    record = RunRecord(equity=[r[:4] for r in equity_rows], fills=fills, positions=trades)
    checkpoint = store.get("checkpoint") or {}
    result = BacktestResult(
        record=record,
        borrow=CostLedger(total=borrow),
        slippage=CostLedger(total=slippage),
        starting_balance=session["starting_balance"],
        final_balance=last_balance,
        currency=session.get("currency", "USDT"),
        mode="paper",
        n_events=int(checkpoint.get("pos", 0)),
        n_bars=len(equity_rows),
        n_predictions=len(signals),
        predictions=[(ts, p) for ts, p, _ in signals],
        latencies_ns=[int(lat * 1e3) for _, _, lat in signals if lat is not None],
    )
    return result, session


def write_report(state_dir: Path) -> tuple[Path, dict]:
    """Write ``STATE_DIR/report/`` and return its path and the metrics."""
    store = StateStore.open_existing(state_dir)
    try:
        result, session = result_from_state(store)
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
        if len(equity) > 1:
            plot_equity(equity, tmp / "equity.png", f"{session['scenario']} (paper): equity vs buy & hold")
            # Sessions shorter than a few days get an hourly tearsheet (daily needs >= 2 whole days).
            span = equity.index[-1] - equity.index[0]
            freq, tear_periods = ("1D", periods) if span >= pd.Timedelta(days=3) else ("1h", periods * 24)
            enabled = session.get("tearsheet", True)
            skip = tearsheet_skip_reason(equity, freq) if enabled else "disabled in scenario"
            if skip is None:
                write_tearsheet(equity, tmp / "tearsheet.html", f"lbml {session['scenario']} (paper)", tear_periods, freq)
                metrics["tearsheet"] = "tearsheet.html"
                metrics["tearsheet_returns"] = freq
            else:
                metrics["tearsheet"] = None
                metrics["tearsheet_skipped"] = skip
        write_json(tmp / "metrics.json", metrics)
    return final, metrics
