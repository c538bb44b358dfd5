"""PNG plots for run folders and the tearsheet (matplotlib, Agg backend)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from lbml.report.metrics import drawdown_summary

MAX_LINE_POINTS = 4000


@contextmanager
def pyplot() -> Iterator:
    """Yield ``matplotlib.pyplot`` (Agg) with matplotlib's default style, whatever an import (quantstats
    restyles matplotlib when imported) left behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):
        yield plt


def envelope(series: pd.Series, max_points: int = MAX_LINE_POINTS) -> pd.Series:
    """Return ``series`` thinned to the min and max of each of ``max_points / 2`` buckets (spikes survive;
    a bucket of NaN keeps one NaN, so gaps stay gaps)."""
    n = len(series)
    if n <= max_points:
        return series
    size = int(np.ceil(n / (max_points // 2)))
    blocks = np.full(-(-n // size) * size, np.nan)
    blocks[:n] = series.to_numpy(dtype=float)
    blocks = blocks.reshape(-1, size)
    start = np.arange(len(blocks)) * size
    lows = np.where(np.isnan(blocks), np.inf, blocks).argmin(axis=1) + start
    highs = np.where(np.isnan(blocks), -np.inf, blocks).argmax(axis=1) + start
    keep = np.union1d(np.union1d(lows, highs), [0, n - 1])
    return series.iloc[keep[keep < n]]


def plot_equity(equity: pd.DataFrame, path: Path, title: str) -> Path:
    """Write equity vs buy & hold above the drawdown (underwater) curve, the max-drawdown period shaded
    from its peak to its recovery, or to the last mark while it has not recovered."""
    with pyplot() as plt:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[3, 1.3])
        _draw_equity(equity, ax1, ax2, title)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path


def _draw_equity(equity: pd.DataFrame, ax1, ax2, title: str) -> None:
    start = equity["equity"].iloc[0]
    line = envelope(equity["equity"])
    hold = envelope(start * equity["close"] / equity["close"].iloc[0])
    ax1.plot(line.index, line.to_numpy(), label="strategy equity", lw=1.2)
    ax1.plot(hold.index, hold.to_numpy(), label="buy & hold", lw=1.0, alpha=0.7)
    ax1.set_title(title)
    ax1.set_ylabel("equity")
    ax1.yaxis.set_major_formatter("{x:,.0f}")
    ax1.grid(alpha=0.3)
    dd = envelope(equity["equity"] / equity["equity"].cummax() - 1.0) * 100
    ax2.fill_between(dd.index, dd.to_numpy(), 0, color="tab:red", alpha=0.4)
    summary = drawdown_summary(equity["equity"])
    if summary["peak"] is not None:
        peak, trough = pd.Timestamp(summary["peak"]), pd.Timestamp(summary["trough"])
        end = pd.Timestamp(summary["recovery"]) if summary["recovery"] else equity.index[-1]
        state = "recovered" if summary["recovery"] else "not recovered"
        label = f"max drawdown {summary['max_drawdown']:.2%} ({state}, {summary['days']:.1f} days)"
        for ax in (ax1, ax2):
            ax.axvspan(peak, end, color="tab:red", alpha=0.08, label=label if ax is ax1 else None)
        ax2.plot([trough], [summary["max_drawdown"] * 100], marker="v", color="tab:red")
    ax1.legend(loc="best")
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)


def plot_returns(returns: pd.Series, path, label: str, rolling: pd.Series | None = None) -> None:
    """Write the histogram of periodic returns and, when given, the rolling Sharpe below it."""
    rows = 2 if rolling is not None else 1
    with pyplot() as plt:
        fig, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows), squeeze=False)
        _draw_returns(returns, axes, label, rolling)
        fig.tight_layout()
        fig.savefig(path, dpi=110, format="png")
        plt.close(fig)


def _draw_returns(returns: pd.Series, axes, label: str, rolling: pd.Series | None) -> None:
    ax = axes[0][0]
    ax.hist(returns * 100, bins=min(50, max(5, len(returns) // 2)), color="tab:blue", alpha=0.7)
    ax.axvline(returns.mean() * 100, color="black", lw=1.0, ls="--", label="mean")
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel(f"{label} return %")
    ax.set_ylabel("count")
    ax.set_title(f"{label} returns ({len(returns)})")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    if rolling is not None:
        ax = axes[1][0]
        ax.plot(rolling.index, rolling.to_numpy(), lw=1.0, color="tab:purple")
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_title(f"rolling Sharpe ({rolling.name})")
        ax.grid(alpha=0.3)
