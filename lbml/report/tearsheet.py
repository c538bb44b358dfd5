"""lbml's tearsheet: one self-contained HTML page rendered from a run folder's ``metrics.json``.

Every number on the page is a ``metrics.json`` value (its cell names the key in ``data-key``), so the
page and the file cannot disagree. A statistic the window cannot support is shown as "n/a" with the
reason ``metrics.json`` gives (``notes``). Plots: equity vs buy & hold over the drawdown with the
max-drawdown period, the trade chart, the returns histogram (with the rolling Sharpe only when the
window holds three rolling windows), leverage and health.

quantstats' own HTML report is not used: on curves that start in a drawdown it shows "-" for the max
drawdown and a positive recovery factor for a loss, and on short windows it draws empty rolling
charts and invents monthly returns. Its statistic functions (Sharpe, Sortino, volatility, CAGR,
rolling Sharpe) are used where they are right.
"""

import base64
import html
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lbml.report.metrics import daily_returns
from lbml.report.trade_chart import read_bar_table

ROLLING_SHARPE_DAYS = 30
ROLLING_SHARPE_MIN_WINDOWS = 3


PCT, RATIO, MONEY, COUNT, DAYS, MINUTES, SCI, TEXT = (
    "{:.2%}", "{:.2f}", "{:,.2f}", "{:.0f}", "{:.2f} days", "{:.1f} min", "{:.3g}", "{}"
)


def when(value: str) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


Row = tuple[str, str, str | Callable[[Any], str]]  # label, metrics.json key, format

PERFORMANCE: list[Row] = [
    ("Window", "window_days", DAYS),
    ("Daily returns", "daily_returns.n", COUNT),
    ("Initial equity", "initial_equity", MONEY),
    ("Final equity", "final_equity", MONEY),
    ("Total return", "total_return", PCT),
    ("Buy & hold return", "buy_and_hold_return", PCT),
    ("CAGR", "cagr", PCT),
    ("Sharpe (daily, annualised)", "sharpe", RATIO),
    ("Sortino (daily, annualised)", "sortino", RATIO),
    ("Volatility (annualised)", "volatility_ann", PCT),
    ("Calmar", "calmar", RATIO),
    ("Time in market", "risk.time_in_market", PCT),
    ("Best day", "daily_returns.best", PCT),
    ("Worst day", "daily_returns.worst", PCT),
    ("Winning days", "daily_returns.positive_share", PCT),
]
DRAWDOWN: list[Row] = [
    ("Max drawdown", "max_drawdown", PCT),
    ("Max drawdown peak", "drawdown.peak", when),
    ("Max drawdown trough", "drawdown.trough", when),
    ("Max drawdown recovery", "drawdown.recovery", when),
    ("Max drawdown length", "drawdown.days", DAYS),
    ("Longest drawdown", "drawdown.longest_days", DAYS),
    ("Recovery factor (total return / |max drawdown|)", "recovery_factor", RATIO),
]
TRADES: list[Row] = [
    ("Trades (round trips)", "n_trades", COUNT),
    ("Win rate", "win_rate", PCT),
    ("Win rate net of costs", "win_rate_net", PCT),
    ("Break-even win rate", "break_even_win_rate", PCT),
    ("Average trade PnL", "avg_trade_pnl", MONEY),
    ("Average holding", "avg_holding_min", MINUTES),
    ("Liquidations", "n_liquidations", COUNT),
]
COST_ORDER = ("fees", "slippage", "gap_slippage", "borrow", "funding", "liquidation_penalty", "gas", "total")
COSTS_HEAD: list[Row] = [("Gross PnL (round trips, before costs)", "gross_pnl", MONEY)]
COSTS_TAIL: list[Row] = [
    ("Costs of the round trips", "total_costs", MONEY),
    ("Costs / gross PnL", "costs_over_gross_pnl", PCT),
    ("Cost per round trip", "cost_per_round_trip", MONEY),
    ("Cost per round trip (of notional)", "cost_per_round_trip_pct", "{:.4%}"),
    ("Traded notional", "traded_notional", MONEY),
    ("Turnover (traded notional / mean equity)", "turnover", MONEY),
    ("Edge gate", "edge_gate.status", TEXT),
    ("Edge gate reason", "edge_gate.reason", TEXT),
    ("Live feed messages quarantined", "feed_quarantine.total", COUNT),
    ("Realised PnL (fills, before costs)", "realized_pnl_gross", MONEY),
    ("Unrealised PnL", "unrealized_pnl", MONEY),
    ("Reconciliation error", "reconciliation_error", SCI),
]
LEVERAGE: list[Row] = [
    ("Leverage model", "leverage_model", TEXT),
    ("Max leverage", "risk.max_leverage", RATIO),
    ("Mean leverage when held", "risk.mean_leverage_when_held", RATIO),
    ("Min health factor", "risk.min_health", RATIO),
]
MISSING = object()


def lookup(metrics: dict, key: str) -> Any:
    """Return ``metrics`` at the dotted ``key`` (list items by index), ``MISSING`` if absent."""
    value: Any = metrics
    for part in key.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def _cell(metrics: dict, key: str, fmt: str | Callable[[Any], str], tag: str = "td") -> str:
    value = lookup(metrics, key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if key == "drawdown.recovery" and lookup(metrics, "drawdown.peak"):
            shown = "not recovered"
        else:
            reason = metrics.get("notes", {}).get(key.split(".")[-1])
            shown = f"n/a ({reason})" if reason else "n/a"
    else:
        shown = fmt.format(value) if isinstance(fmt, str) else fmt(value)
    return f"<{tag} class='v' data-key='{html.escape(key)}'>{html.escape(shown)}</{tag}>"


def table(title: str, metrics: dict, rows: list[Row]) -> str:
    """Render the rows whose key ``metrics`` holds (absent keys are left out)."""
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>{_cell(metrics, key, fmt)}</tr>"
        for label, key, fmt in rows
        if lookup(metrics, key) is not MISSING
    )
    section = f"lbml-{title.lower()}"
    return f"<section id='{section}'><h2>{html.escape(title)}</h2><table>{body}</table></section>" if body else ""


def cost_rows(metrics: dict) -> list[Row]:
    costs = metrics.get("costs", {})
    names = [n for n in COST_ORDER if n in costs] + sorted(set(costs) - set(COST_ORDER))
    return COSTS_HEAD + [(f"Costs: {n.replace('_', ' ')}", f"costs.{n}", MONEY) for n in names] + COSTS_TAIL


def monthly_table(metrics: dict) -> str:
    months = metrics.get("monthly_returns", [])
    if not months:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(m['month'])}</td>"
        + _cell(metrics, f"monthly_returns.{i}.return", PCT)
        + _cell(metrics, f"monthly_returns.{i}.days", COUNT)
        + "</tr>"
        for i, m in enumerate(months)
    )
    return ("<h2>Monthly returns (months the window covers)</h2>"
            f"<table><tr><th>Month</th><th>Return</th><th>Days covered</th></tr>{rows}</table>")


def _image(data: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'/>"


def returns_figure(equity: pd.DataFrame, metrics: dict, freq: str, periods_per_year: int) -> tuple[str, list[str]]:
    """Return the returns histogram (plus the rolling Sharpe if the window supports it) and the notes."""
    import quantstats as qs

    from lbml.report.plots import plot_returns

    returns = daily_returns(equity["equity"], freq)
    label = "daily" if freq == "1D" else freq
    notes, rolling = [], None
    n_daily = lookup(metrics, "daily_returns.n")
    needed = ROLLING_SHARPE_DAYS * ROLLING_SHARPE_MIN_WINDOWS
    if freq == "1D" and isinstance(n_daily, int) and n_daily >= needed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rolling = qs.stats.rolling_sharpe(returns, rolling_period=ROLLING_SHARPE_DAYS,
                                              periods_per_year=periods_per_year).dropna()
        rolling.name = f"{ROLLING_SHARPE_DAYS} days"
    else:
        notes.append(f"Rolling {ROLLING_SHARPE_DAYS}-day Sharpe omitted: the window holds {n_daily} daily returns, "
                     f"fewer than {needed} ({ROLLING_SHARPE_MIN_WINDOWS} rolling windows).")
    if len(returns) < 2:
        return "", notes + [f"Returns histogram omitted: {len(returns)} {label} returns."]
    buffer = io.BytesIO()
    plot_returns(returns, buffer, label, rolling)
    return _image(buffer.getvalue(), "returns"), notes


def _span(metrics: dict) -> str:
    if lookup(metrics, "first_mark") in (MISSING, None):
        return ""
    first, last = (_cell(metrics, key, when, "span") for key in ("first_mark", "last_mark"))
    return f"Equity marks {first} to {last}, "


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin-bottom:1em}td,th{padding:2px 12px;border-bottom:1px solid #ddd}
td.v{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;display:block;margin:1em 0}
.notes{color:#555}.cols{display:flex;flex-wrap:wrap;gap:2em}"""


def write_tearsheet(run_dir: Path, title: str, periods_per_year: int = 365, freq: str = "1D") -> Path:
    """Write ``run_dir/tearsheet.html`` from ``run_dir/metrics.json`` and the folder's CSVs and PNGs.

    ``freq`` samples the returns histogram (``"1h"`` for sessions shorter than a few days).
    """
    metrics = json.loads((run_dir / "metrics.json").read_text())
    equity = read_bar_table(run_dir / "equity.csv")
    returns_png, notes = returns_figure(equity, metrics, freq, periods_per_year)
    notes += [f"{key.replace('_', ' ')}: n/a ({reason})" for key, reason in metrics.get("notes", {}).items()]
    images = [_image((run_dir / name).read_bytes(), name) for name in ("equity.png", "trades.png")
              if (run_dir / name).is_file()]
    risk = [_image((run_dir / "risk.png").read_bytes(), "risk.png")] if (run_dir / "risk.png").is_file() else []
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{_span(metrics)}{html.escape(str(metrics.get('currency', '')))}. "
        "Every number on this page is this run's metrics.json.</p>"
        "<div class='cols'><div>" + table("Performance", metrics, PERFORMANCE)
        + table("Drawdown", metrics, DRAWDOWN) + "</div><div>" + table("Trades", metrics, TRADES)
        + table("Costs", metrics, cost_rows(metrics)) + table("Leverage", metrics, LEVERAGE)
        + monthly_table(metrics) + "</div></div>"
        + "".join(images) + returns_png + "".join(risk)
        + "<h2>Not shown</h2><ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        + "</body></html>"
    )
    path = run_dir / "tearsheet.html"
    path.write_text(page)
    return path
