"""The chart traders look at first (after freqtrade's ``plot-dataframe``): price with every entry, exit
(by reason) and liquidation marked, equity below it, then exposure.

Built from a run folder's CSVs alone (``equity.csv``, ``trades.csv``, ``fills.csv``, ``risk.csv``,
``liquidations.csv``), so backtest and paper folders get the same picture. Lines are thinned to a
min/max envelope of a few thousand points; markers are never dropped.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from lbml.report.plots import envelope, pyplot

STOP_ORDER_TYPES = {"STOP_MARKET", "STOP_LIMIT", "TRAILING_STOP_MARKET", "TRAILING_STOP_LIMIT"}
#: exit reason -> (marker, colour, legend label)
EXIT_STYLES = {
    "take_profit": ("P", "tab:blue", "exit: take-profit"),
    "stop_loss": ("X", "tab:orange", "exit: stop-loss"),
    "liquidation": ("X", "black", "exit: liquidation"),
    "market": ("o", "tab:gray", "exit: market order"),
    "exit": ("o", "tab:gray", "exit"),
}
OTHER_STYLES = [("s", "tab:purple"), ("D", "tab:brown"), ("v", "tab:pink"), ("^", "tab:olive"), ("*", "tab:cyan")]


def exit_reasons(trades: pd.DataFrame, fills: pd.DataFrame) -> pd.Series:
    """Return each trade's exit reason: ``exit_reason`` if the trades table has it, else the type of the
    order whose fill closed the trade (stop-loss, take-profit, liquidation, market order), else "exit"."""
    if "exit_reason" in trades.columns and trades["exit_reason"].notna().all():  # recorded by the run
        return trades["exit_reason"].astype(str)
    if not len(trades) or not {"order_type", "ts", "side"} <= set(fills.columns):
        return pd.Series("exit", index=trades.index)
    closing = fills.assign(order_type=fills["order_type"].astype(str)).sort_values("ts")
    left = trades.assign(close_side=np.where(trades["side"] == "LONG", "SELL", "BUY"), row=trades.index)
    matched = pd.merge_asof(
        left.sort_values("closed"), closing[["ts", "side", "order_type", "liquidation"]],
        left_on="closed", right_on="ts", left_by="close_side", right_by="side",
        direction="nearest", tolerance=pd.Timedelta(seconds=1),
    ).set_index("row").reindex(trades.index)
    reason = pd.Series("market", index=trades.index)
    reason[matched["order_type"].isin(STOP_ORDER_TYPES)] = "stop_loss"
    reason[matched["order_type"] == "LIMIT"] = "take_profit"
    reason[matched["liquidation"].astype(str) == "True"] = "liquidation"
    reason[matched["order_type"].isna()] = "exit"
    return reason


def read_bar_table(path: Path) -> pd.DataFrame:
    """Return a per-bar table (``equity.csv``, ``risk.csv``) indexed by its UTC timestamps."""
    frame = pd.read_csv(path, index_col=0)
    frame.index = pd.to_datetime(frame.index, utc=True, format="ISO8601")
    return frame


def read_run_frames(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Return the run folder's equity, risk, trades, fills and liquidations tables (empty if absent)."""
    frames = {}
    for name in ("equity", "risk"):
        path = run_dir / f"{name}.csv"
        frames[name] = read_bar_table(path) if path.is_file() else pd.DataFrame()
    for name, columns in (("trades", ("opened", "closed")), ("fills", ("ts",)), ("liquidations", ("ts",))):
        path = run_dir / f"{name}.csv"
        frame = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(columns))
        for col in columns:
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        frames[name] = frame
    return frames


def plot_trades(run_dir: Path, path: Path, title: str) -> Path:
    """Write the price / equity / exposure chart of the run folder ``run_dir`` to ``path``."""
    f = read_run_frames(run_dir)
    with pyplot() as plt:
        fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 9), sharex=True, height_ratios=[3, 1.4, 1])
        fig.suptitle(title)
        _draw_price(ax1, f)
        for ax in (ax1, ax2, ax3):
            for ts in f["liquidations"]["ts"].drop_duplicates():
                ax.axvline(ts, color="tab:red", alpha=0.5, lw=1.0)
            ax.grid(alpha=0.3)
        _draw_equity_and_exposure(ax2, ax3, f["equity"], f["risk"])
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path


def _draw_price(ax1, f: dict[str, pd.DataFrame]) -> None:
    equity, trades, liquidations = f["equity"], f["trades"], f["liquidations"]
    price = envelope(equity["close"])
    ax1.plot(price.index, price.to_numpy(), lw=0.7, color="0.35", label="close", zorder=1)
    size = 36 if len(trades) < 200 else 14 if len(trades) < 1000 else 7
    for side, marker, colour in (("LONG", "^", "tab:green"), ("SHORT", "v", "tab:red")):
        rows = trades[trades["side"] == side]
        if not len(rows):
            continue
        ax1.scatter(rows["opened"], rows["entry_price"], marker=marker, s=size, color=colour, lw=0, alpha=0.8,
                    label=f"entry {side.lower()} ({len(rows)})", zorder=3)
    reasons = exit_reasons(trades, f["fills"])
    others = iter(OTHER_STYLES * 10)
    for reason in sorted(reasons.unique()):
        marker, colour, label = EXIT_STYLES.get(reason) or (*next(others), f"exit: {reason}")
        rows = trades[reasons == reason]
        ax1.scatter(rows["closed"], rows["exit_price"], marker=marker, s=size, color=colour, lw=0, alpha=0.8,
                    label=f"{label} ({len(rows)})", zorder=4)
    if len(liquidations):
        ax1.scatter(liquidations["ts"], liquidations["price"], marker="X", s=120, color="black",
                    edgecolor="tab:red", lw=1.0, label=f"liquidation ({len(liquidations)})", zorder=5)
    ax1.set_ylabel("price (close)")
    ax1.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, ncol=4, frameon=False)


def _draw_equity_and_exposure(ax2, ax3, equity: pd.DataFrame, risk: pd.DataFrame) -> None:
    line = envelope(equity["equity"])
    ax2.plot(line.index, line.to_numpy(), lw=1.0, color="tab:blue", label="equity")
    ax2.axhline(float(equity["equity"].iloc[0]), color="0.5", lw=0.8, ls="--", label="start")
    ax2.set_ylabel("equity")
    ax2.yaxis.set_major_formatter("{x:,.0f}")
    ax2.legend(loc="upper left", fontsize=8)
    if len(risk):
        exposure = envelope((risk["exposure"] / equity["equity"].reindex(risk.index)).fillna(0.0))
        for part, colour, label in ((exposure.clip(lower=0), "tab:green", "long"),
                                    (exposure.clip(upper=0), "tab:red", "short")):
            if part.any():
                ax3.fill_between(exposure.index, part, 0.0, step="post", color=colour, alpha=0.5, label=label)
        if exposure.any():
            ax3.legend(loc="upper left", fontsize=8)
    ax3.axhline(0.0, color="0.5", lw=0.6)
    ax3.set_ylabel("exposure (× equity)")
