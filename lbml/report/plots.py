"""PNG plots for run folders (matplotlib, Agg backend)."""

from pathlib import Path

import pandas as pd


def plot_equity(equity: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[3, 1])
    start = equity["equity"].iloc[0]
    ax1.plot(equity.index, equity["equity"], label="strategy equity", lw=1.2)
    ax1.plot(equity.index, start * equity["close"] / equity["close"].iloc[0], label="buy & hold", lw=1.0, alpha=0.7)
    ax1.set_title(title)
    ax1.set_ylabel("equity")
    ax1.legend(loc="best")
    ax1.grid(alpha=0.3)
    dd = equity["equity"] / equity["equity"].cummax() - 1.0
    ax2.fill_between(equity.index, dd * 100, 0, color="tab:red", alpha=0.4)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
