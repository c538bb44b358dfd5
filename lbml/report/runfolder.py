"""Run folder naming and JSON output (folders are written atomically by ``lbml.atomic``)."""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_run_path(runs_dir: Path, name: str) -> Path:
    """A run folder of its own: ``NAME-YYYYmmdd-HHMMSS[-n]``, reserved by creating it empty.

    ``mkdir`` either creates the folder or fails, so two runs started in the same second get two
    folders; the run's atomic writer then renames its finished output onto the empty reservation.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        path = runs_dir / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


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


def write_reports(
    folder: Path, result, metrics: dict, title: str, *, tearsheet: bool = True, periods_per_year: int = 365,
    freq: str = "1D",
) -> dict:
    """Write a run's report (the same for backtest and paper folders): ``equity.png``, the risk files
    (``metrics["risk"]``), then ``finish_run_folder``. Call after ``write_run_tables``."""
    from lbml.report.plots import plot_equity
    from lbml.report.risk_plots import write_risk_reports

    equity = result.record.equity_frame()
    if len(equity) > 1:
        plot_equity(equity, folder / "equity.png", f"{title}: equity vs buy & hold")
    metrics["risk"] = write_risk_reports(folder, result, f"{title}: leverage, health, exposure")
    return finish_run_folder(folder, metrics, title, tearsheet=tearsheet, periods_per_year=periods_per_year,
                             freq=freq)


def finish_run_folder(
    folder: Path, metrics: dict, title: str, *, tearsheet: bool = True, periods_per_year: int = 365, freq: str = "1D"
) -> dict:
    """Draw ``trades.png``, write ``metrics.json``, then the tearsheet rendered from that file.

    Call last, with ``equity.csv`` (and ``trades.csv``, ``risk.csv``... when the run has them), ``equity.png``
    and ``risk.png`` already written. ``metrics`` gains ``trades_chart`` and ``tearsheet`` (or
    ``tearsheet_skipped``); it is returned.
    """
    from lbml.report.tearsheet import write_tearsheet
    from lbml.report.trade_chart import plot_trades

    n_marks = 0
    if (folder / "equity.csv").is_file():
        with (folder / "equity.csv").open() as lines:
            n_marks = sum(1 for _ in lines) - 1
    if n_marks > 1 and (folder / "trades.csv").is_file():
        plot_trades(folder, folder / "trades.png", f"{title}: price, trades, equity, exposure")
        metrics["trades_chart"] = "trades.png"
    skip = None if tearsheet else "disabled in scenario"
    if n_marks < 2:
        skip = "fewer than two equity marks"
    metrics["tearsheet"] = None if skip else "tearsheet.html"
    if skip:
        metrics["tearsheet_skipped"] = skip
    else:
        metrics["tearsheet_returns"] = freq
    write_json(folder / "metrics.json", metrics)
    if not skip:
        write_tearsheet(folder, f"{title} — lbml tearsheet", periods_per_year, freq)
    return metrics


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_default) + "\n")


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
