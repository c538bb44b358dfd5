"""Leverage reports for a run folder: risk.csv (exposure, leverage, health, liquidation price per
bar), liquidations.csv and risk.png (leverage, health factor and exposure over time)."""

from pathlib import Path

import numpy as np
import pandas as pd

from lbml.engine.backtest import BacktestResult
from lbml.report.metrics import ledger_frame
from lbml.report.plots import envelope, pyplot

HEALTH_CLIP = (0.5, 100.0)


def write_risk_reports(run_dir: Path, result: BacktestResult, title: str) -> dict:
    """Write the risk table, liquidation list and plot; return a summary for ``metrics.json``."""
    risk = result.record.risk_frame()
    risk.to_csv(run_dir / "risk.csv")
    liquidations = pd.DataFrame(
        result.liquidations, columns=["ts", "order_id", "side", "quantity", "price", "penalty"]
    )
    liquidations["ts"] = pd.to_datetime(liquidations["ts"], utc=True)
    liquidations.to_csv(run_dir / "liquidations.csv", index=False)
    ledger_frame(result).to_csv(run_dir / "ledgers.csv", index=False)
    summary: dict = {"risk_csv": "risk.csv", "liquidations_csv": "liquidations.csv", "ledgers_csv": "ledgers.csv"}
    if len(risk):
        held = risk[risk["exposure"] != 0.0]
        finite = held["health"].replace([np.inf, -np.inf], np.nan).dropna()
        summary |= {
            "max_leverage": float(risk["leverage"].replace(np.inf, np.nan).max()),
            "mean_leverage_when_held": float(held["leverage"].mean()) if len(held) else 0.0,
            "time_in_market": float(len(held) / len(risk)),
            "min_health": float(finite.min()) if len(finite) else None,
        }
        plot_risk(risk, liquidations, run_dir / "risk.png", title)
        summary["risk_png"] = "risk.png"
    return summary


def plot_risk(risk: pd.DataFrame, liquidations: pd.DataFrame, path: Path, title: str) -> Path:
    with pyplot() as plt:
        fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
        _draw_risk(risk, liquidations, *axes, title)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return path


def _draw_risk(risk: pd.DataFrame, liquidations: pd.DataFrame, ax1, ax2, ax3, title: str) -> None:
    leverage = envelope(risk["leverage"])
    ax1.plot(leverage.index, leverage.to_numpy(), lw=0.8, color="tab:blue")
    ax1.set_ylabel("leverage (× equity)")
    ax1.set_title(title)
    health = envelope(risk["health"].clip(*HEALTH_CLIP).where(risk["exposure"] != 0.0))
    ax2.plot(health.index, health.to_numpy(), lw=0.8, color="tab:green")
    ax2.axhline(1.0, color="tab:red", lw=1.0, ls="--", label="liquidation (1.0)")
    ax2.set_yscale("log")
    ax2.set_ylabel("health (log, clipped)")
    ax2.legend(loc="upper right")
    exposure = envelope(risk["exposure"])
    ax3.fill_between(exposure.index, exposure.to_numpy(), 0.0, color="tab:purple", alpha=0.5, step="post")
    ax3.set_ylabel("exposure (quote, + long)")
    for ts in liquidations["ts"]:
        for ax in (ax1, ax2, ax3):
            ax.axvline(ts, color="tab:red", alpha=0.6, lw=1.0)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
