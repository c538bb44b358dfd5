"""Run folder naming and JSON output (folders are written atomically by ``lbml.atomic``)."""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_run_path(runs_dir: Path, name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = runs_dir / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = runs_dir / f"{name}-{stamp}-{n}"
    return path


def write_run_tables(folder: Path, result) -> None:
    """Write a run's equity, trades (with each round trip's gross PnL and costs), fills and
    predictions as CSV (timestamps as UTC datetimes)."""
    import pandas as pd

    from lbml.report.metrics import ledger_frame
    from lbml.report.trade_costs import COST_KINDS, trade_cost_table

    result.record.equity_frame().to_csv(folder / "equity.csv")
    trades = result.record.trades_frame()
    costs = trade_cost_table(trades, result.record.fills_frame(), ledger_frame(result))
    for col in ("gross_pnl", *COST_KINDS, "total_cost", "net_pnl"):
        trades[col] = costs[col].to_numpy()
    for col in ("opened", "closed"):
        trades[col] = pd.to_datetime(trades[col], utc=True)
    trades.to_csv(folder / "trades.csv", index=False)
    fills = result.record.fills_frame()
    fills["ts"] = pd.to_datetime(fills["ts"], utc=True)
    fills.to_csv(folder / "fills.csv", index=False)
    predictions = pd.DataFrame(list(result.predictions), columns=["ts", "probability_up"])
    predictions["ts"] = pd.to_datetime(predictions["ts"], utc=True)
    predictions.to_csv(folder / "predictions.csv", index=False)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_default) + "\n")


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
