"""Check a run folder's tearsheet against its metrics.json and its equity curve, independently of lbml's code."""

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

CELL = re.compile(r"<(td|span) class='v' data-key='([^']+)'>([^<]*)</\1>")
NUMBER = re.compile(r"(-?[\d,]*\.?\d+)(?:e([-+]\d+))?( ?%| days| min)?")
DATES = ("peak", "trough", "recovery", "first_mark", "last_mark")


def shown_cells(page: str) -> dict[str, str]:
    """Return every value the page shows, by the metrics.json key its cell names."""
    return {key: html.unescape(text) for _, key, text in CELL.findall(page)}


def labelled(page: str) -> dict[str, str]:
    """Return the shown value of every table row, by its label."""
    rows = re.findall(r"<tr><td>([^<]*)</td><td class='v' data-key='[^']+'>([^<]*)</td>", page)
    return {html.unescape(label): html.unescape(text) for label, text in rows}


def lookup(metrics: dict, key: str):
    value = metrics
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def assert_shown_equals(key: str, shown: str, value, notes: dict) -> None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        reason = notes.get(key.split(".")[-1])
        assert shown in ("not recovered", f"n/a ({reason})" if reason else "n/a"), (key, shown)
        return
    if key.split(".")[-1] in DATES:
        assert shown == pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC"), (key, shown, value)
        return
    if isinstance(value, str):
        assert shown == value, (key, shown, value)
        return
    match = NUMBER.fullmatch(shown)
    assert match, f"{key}: {shown!r} is not a number"
    mantissa, exponent, unit = match.groups()
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 100.0 if unit and unit.strip() == "%" else 1.0
    power = 10.0 ** int(exponent) if exponent else 1.0
    number = float(mantissa.replace(",", "")) * power
    assert abs(value * scale - number) <= 0.5 * 10.0**-decimals * power * (1 + 1e-9), (key, shown, value)


def daily_closes(equity: pd.Series) -> pd.Series:
    """Last mark of each day, a mark at 00:00:00 closing the day before; the first mark is the base."""
    marks = equity.iloc[1:]
    days = (marks.index - pd.Timedelta(1, "ns")).floor("D")
    return marks.groupby(days).last()


def assert_tearsheet_matches(run_dir: Path) -> dict[str, str]:
    """Assert every number of ``run_dir``'s tearsheet equals metrics.json to its shown precision and that
    max drawdown, Sharpe, daily returns and time in market equal a recomputation from the CSVs."""
    page = (run_dir / "tearsheet.html").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cells = shown_cells(page)
    for key, shown in cells.items():
        assert_shown_equals(key, shown, lookup(metrics, key), metrics.get("notes", {}))
    for key in ("total_return", "max_drawdown", "drawdown.peak", "recovery_factor", "daily_returns.n"):
        assert key in cells, key
    # no number on the page outside a metrics.json cell, except month labels and the notes' reasons
    bare = re.sub(r"<(td|span) class='v'[^>]*>[^<]*</\1>|<img[^>]*>|<style>.*?</style>|<title>.*?</title>|<h1>.*?</h1>",
                  "", page, flags=re.S)
    bare = re.sub(r"<li>[^<]*</li>", "", bare)
    months = {m["month"] for m in metrics.get("monthly_returns", [])}
    for number in re.findall(r">[^<]*\d[^<]*<", bare):
        assert number.strip("><") in months, f"number outside metrics.json cells: {number}"
    equity = pd.read_csv(run_dir / "equity.csv", index_col=0, parse_dates=True)["equity"]
    mdd = float((equity / equity.cummax() - 1.0).min())
    assert abs(metrics["max_drawdown"] - mdd) < 1e-12
    assert_shown_equals("max_drawdown", labelled(page)["Max drawdown"], mdd, {})
    closes = daily_closes(equity)
    returns = pd.concat([pd.Series([equity.iloc[0]]), closes.reset_index(drop=True)]).pct_change().dropna()
    assert metrics["daily_returns"]["n"] == len(returns)
    assert labelled(page)["Daily returns"] == str(len(returns))
    if len(returns) >= 2 and returns.std() > 0:
        sharpe = returns.mean() / returns.std() * np.sqrt(365)
        assert abs(metrics["sharpe"] - sharpe) < 1e-9 * max(1.0, abs(sharpe))
        assert_shown_equals("sharpe", labelled(page)["Sharpe (daily, annualised)"], sharpe, {})
    risk_csv = run_dir / "risk.csv"
    if risk_csv.is_file():
        risk = pd.read_csv(risk_csv, index_col=0)
        held = float((risk["exposure"] != 0.0).mean())
        assert abs(metrics["risk"]["time_in_market"] - held) < 1e-12
        assert_shown_equals("risk.time_in_market", labelled(page)["Time in market"], held, {})
    return cells
