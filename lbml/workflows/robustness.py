"""Robustness of a backtest, written into its run folder (``robustness/``).

- **Monte Carlo**: circular block bootstrap (``arch.bootstrap``) of the strategy's equity returns on
  a regular grid (default 15 minutes), ≥ 1,000 paths; percentile bands of the equity path, final
  equity and maximum drawdown. Block length from ``arch``'s optimal-block-length estimate unless set.
- **Regimes**: the backtest is cut into windows of ``regime_window_bars`` bars; each window is
  labelled from the *previous* window's prices (no look-ahead): trend / random / mean-reverting by
  its Hurst exponent (slope of log std of k-bar log-price differences against log k, k = 2..32) and
  low / mid / high volatility by terciles of the previous window's realised volatility. The table
  gives the strategy's and buy-and-hold's return per regime.
- **Sensitivity**: the same trained model re-run on nautilus over a documented subset (the first
  ``sweep_days`` of the backtest window) with one input changed at a time: fees, slippage, borrow
  rate, leverage and Kelly fraction (each × a low and a high factor).
- **Buy and hold**: return, maximum drawdown and daily Sharpe of the strategy next to holding the
  traded asset over the same bars.
"""

import copy
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PERCENTILES = (5, 25, 50, 75, 95)
HURST_LAGS = (2, 4, 8, 16, 32)


# ----------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class MonteCarlo:
    n_paths: int
    block_length: int
    final_equity: dict[int, float]
    max_drawdown: dict[int, float]
    bands: pd.DataFrame  # index: step, columns: p5..p95 of the equity path
    prob_loss: float


def max_drawdown(equity: np.ndarray) -> np.ndarray:
    """Maximum drawdown (≤ 0) of each row of ``equity``."""
    peak = np.maximum.accumulate(equity, axis=-1)
    return (equity / peak - 1.0).min(axis=-1)


def block_bootstrap(
    returns: np.ndarray, initial: float, n_paths: int = 1000, block_length: int | None = None, seed: int = 7
) -> MonteCarlo:
    """Resample ``returns`` (simple, per grid step) in circular blocks into ``n_paths`` equity paths."""
    from arch.bootstrap import CircularBlockBootstrap, optimal_block_length

    returns = np.asarray(returns, dtype=np.float64)
    if len(returns) < 4:
        raise ValueError("need at least 4 returns for a block bootstrap")
    if block_length is None:
        with np.errstate(all="ignore"):
            estimate = float(optimal_block_length(returns)["circular"].iloc[0])
        if not math.isfinite(estimate):  # e.g. a flat curve (no trades): plain resampling
            estimate = 1.0
        block_length = int(min(max(1, math.ceil(estimate)), max(1, len(returns) // 4)))
    bs = CircularBlockBootstrap(block_length, returns, seed=np.random.default_rng(seed))
    paths = np.empty((n_paths, len(returns) + 1))
    paths[:, 0] = initial
    for i, (data, _) in enumerate(bs.bootstrap(n_paths)):
        paths[i, 1:] = initial * np.cumprod(1.0 + data[0])
    final = paths[:, -1]
    dd = max_drawdown(paths)
    bands = pd.DataFrame({f"p{p}": np.percentile(paths, p, axis=0) for p in PERCENTILES})
    return MonteCarlo(
        n_paths=n_paths,
        block_length=block_length,
        final_equity={p: float(np.percentile(final, p)) for p in PERCENTILES},
        max_drawdown={p: float(np.percentile(dd, p)) for p in PERCENTILES},
        bands=bands,
        prob_loss=float((final < initial).mean()),
    )


# ----------------------------------------------------------------------------- regimes


def hurst_exponent(log_prices: np.ndarray, lags: tuple[int, ...] = HURST_LAGS) -> float:
    """Hurst exponent from the scaling of k-step differences: std(x_{t+k} − x_t) ∝ k^H."""
    x = np.asarray(log_prices, dtype=np.float64)
    usable = [k for k in lags if k < len(x) // 2]
    if len(usable) < 3:
        return float("nan")
    tau = np.array([np.std(x[k:] - x[:-k]) for k in usable])
    if np.any(tau <= 0):
        return float("nan")
    slope, _ = np.polyfit(np.log(usable), np.log(tau), 1)
    return float(slope)


def regime_table(equity: pd.DataFrame, window: int = 240, trend: float = 0.55, revert: float = 0.45) -> pd.DataFrame:
    """Per-window returns labelled by the previous window's Hurst exponent and volatility."""
    close = equity["close"].to_numpy()
    value = equity["equity"].to_numpy()
    n = len(close) // window
    rows = []
    for k in range(1, n):
        prev = np.log(close[(k - 1) * window : k * window])
        cur = slice(k * window - 1, (k + 1) * window)  # from the previous window's last bar
        h = hurst_exponent(prev)
        vol = float(np.std(np.diff(prev)))
        strat = value[cur][-1] / value[cur][0] - 1.0 if value[cur][0] > 0 else float("nan")
        rows.append({
            "start": equity.index[k * window],
            "hurst_prev": h,
            "vol_prev": vol,
            "trend_regime": "trend" if h > trend else ("mean_reversion" if h < revert else "random"),
            "strategy_return": strat,
            "buy_and_hold_return": close[cur][-1] / close[cur][0] - 1.0,
        })
    table = pd.DataFrame(rows)
    if len(table) >= 3:
        table["vol_regime"] = pd.qcut(table["vol_prev"].rank(method="first"), 3, labels=["low_vol", "mid_vol", "high_vol"])
    else:
        table["vol_regime"] = "mid_vol"
    return table


def regime_summary(table: pd.DataFrame) -> pd.DataFrame:
    out = []
    for kind in ("trend_regime", "vol_regime"):
        if not len(table):
            break
        for label, group in table.groupby(kind, observed=True):
            out.append({
                "dimension": kind,
                "regime": str(label),
                "n_windows": int(len(group)),
                "strategy_return": float(np.prod(1.0 + group["strategy_return"]) - 1.0),
                "strategy_mean_window": float(group["strategy_return"].mean()),
                "strategy_hit_rate": float((group["strategy_return"] > 0).mean()),
                "buy_and_hold_return": float(np.prod(1.0 + group["buy_and_hold_return"]) - 1.0),
            })
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- buy and hold


def buy_and_hold_table(equity: pd.DataFrame) -> pd.DataFrame:
    from lbml.report.metrics import daily_returns

    rows = []
    start = float(equity["equity"].iloc[0])
    hold = start * equity["close"] / float(equity["close"].iloc[0])
    for name, series in (("strategy", equity["equity"]), ("buy_and_hold", hold)):
        daily = daily_returns(series)
        sharpe = float(daily.mean() / daily.std() * math.sqrt(365)) if len(daily) > 1 and daily.std() > 0 else None
        rows.append({
            "name": name,
            "total_return": float(series.iloc[-1] / series.iloc[0] - 1.0),
            "max_drawdown": float(max_drawdown(series.to_numpy())),
            "sharpe_daily_ann": sharpe,
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- sensitivity


SWEEP_FACTORS = (0.5, 2.0)


def sweep_variants(scenario) -> list[tuple[str, float, Any]]:
    """One-at-a-time variants: (parameter, value, scenario)."""
    s, c, lev = scenario.strategy, scenario.costs, scenario.leverage
    out: list[tuple[str, float, Any]] = []

    def with_(section: str, **changes):
        current = getattr(scenario, section)
        return scenario.model_copy(update={section: current.model_copy(update=changes)})

    for f in SWEEP_FACTORS:
        out.append(("fees", f, with_("costs", maker_fee=min(0.01, c.maker_fee * f), taker_fee=min(0.01, c.taker_fee * f))))
    for f in SWEEP_FACTORS:
        out.append(("slippage_bps", max(0.5, c.slippage_bps) * f, with_("costs", slippage_bps=max(0.5, c.slippage_bps) * f)))
    for f in (2.0, 5.0):  # stress the borrow rate (research notes: 2x and 5x the base rate)
        if lev.model == "aave_lending":
            out.append(("borrow_stress", lev.stress_multiplier * f, with_("leverage", stress_multiplier=lev.stress_multiplier * f)))
        elif lev.model == "exchange_margin" and lev.funding:
            out.append(("funding_multiplier", lev.funding_multiplier * f, with_("leverage", funding_multiplier=lev.funding_multiplier * f)))
        else:
            out.append(("borrow_apr_quote", c.borrow_apr_quote * f, with_("costs", borrow_apr_quote=min(5.0, c.borrow_apr_quote * f))))
    for f in SWEEP_FACTORS:
        value = max(1.0, s.max_leverage * f)
        variant = with_("strategy", max_leverage=value)
        if lev.model == "exchange_margin":
            variant = variant.model_copy(update={"leverage": variant.leverage.model_copy(update={"margin_leverage": max(lev.margin_leverage, value)})})
        out.append(("max_leverage", value, variant))
    for f in SWEEP_FACTORS:
        out.append(("kelly_fraction", min(1.0, s.kelly_fraction * f), with_("strategy", kelly_fraction=min(1.0, s.kelly_fraction * f))))
    return out


def sweep_runs(prepared, registry, artifact, days: float, trade: bool = True) -> Iterator[tuple[str, float, Any, Any]]:
    """Yield ``(parameter, value, scenario, result)``: the unchanged ``base`` run, then each variant.

    Every run replays the first ``days`` of the backtest window on nautilus from its own copy of
    one warmed-up pipeline, with the artifact's model, EV margin and pricing, trading only when the
    main run's edge gate let it (``trade``), so the ``base`` run reproduces the main run's trades on
    that window exactly.
    """
    short = sweep_split(prepared.split, days)
    pipeline = _warm_pipeline(prepared, registry, artifact)
    for name, value, scenario in sweep_grid(prepared.scenario):
        yield name, value, scenario, _variant_backtest(scenario, prepared.market, short, pipeline, artifact, trade)


def sweep_grid(scenario) -> list[tuple[str, float, Any]]:
    """The unchanged ``base`` scenario, then every one-at-a-time variant."""
    return [("base", float("nan"), scenario), *sweep_variants(scenario)]


def _warm_pipeline(prepared, registry, artifact):
    from lbml.research.training import scenario_pipeline
    from lbml.workflows.prepare import warm_up

    pipeline = scenario_pipeline(prepared.scenario, prepared.market, registry)
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    return pipeline


def _variant_backtest(scenario, market, short, pipeline, artifact, trade: bool):
    from lbml.engine.backtest import run_backtest

    return run_backtest(
        scenario, market, short, copy.deepcopy(pipeline), artifact.model, ev_margin=artifact.ev_margin,
        pricing=artifact.pricing, trade=trade,
    )


def sweep_row(
    variant: tuple[str, float, Any], *, market, short, pipeline, model_files: dict[str, bytes], registry, trade: bool
) -> dict[str, Any]:
    """One sensitivity run as a table row: a pure function of its inputs (a Dask task, ``lbml.sweeps``).

    The model travels as its artifact's files and is loaded (hash-checked) from a private folder.
    """
    import tempfile

    from lbml.models.artifact import load_artifact
    from lbml.report.metrics import compute_metrics

    from lbml.sweeps import one_blas_thread

    name, value, scenario = variant
    with one_blas_thread(), tempfile.TemporaryDirectory(prefix="lbml-sweep-") as work:
        for rel, content in model_files.items():
            (Path(work) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(work) / rel).write_bytes(content)
        artifact = load_artifact(Path(work), registry, expected_schema=pipeline.schema())
        result = _variant_backtest(scenario, market, short, pipeline, artifact, trade)
    m = compute_metrics(result, scenario.report.periods_per_year)
    return {
        "parameter": name,
        "value": value,
        "total_return": m["total_return"],
        "max_drawdown": m.get("max_drawdown"),
        "n_trades": m["n_trades"],
        "n_liquidations": m["n_liquidations"],
        **{f"cost_{k}": v for k, v in m["costs"].items()},
        "reconciliation_error": m["reconciliation_error"],
    }


def sweep_split(split, days: float):
    """The backtest split cut to its first ``days``."""
    return replace(split, test_end=min(split.test_end, split.test_start + pd.Timedelta(days=days)))


def sensitivity_sweep(prepared, registry, artifact, days: float, trade: bool = True, sweep=None) -> pd.DataFrame:
    """Re-run the backtest engine on the first ``days`` of the backtest window for each variant.

    Every variant is an independent task (:func:`sweep_row`); ``sweep`` (``lbml.sweeps``) runs them
    on Dask, with the table identical to the serial one.
    """
    from lbml.sweeps import SerialSweep

    short = sweep_split(prepared.split, days)
    files = {str(f.relative_to(artifact.path)): f.read_bytes() for f in sorted(Path(artifact.path).rglob("*"))
             if f.is_file()}
    rows = (sweep or SerialSweep()).map(
        sweep_row, sweep_grid(prepared.scenario), market=prepared.market, short=short,
        pipeline=_warm_pipeline(prepared, registry, artifact), model_files=files, registry=registry, trade=trade,
    )
    table = pd.DataFrame(rows)
    table.attrs["window"] = (short.test_start.isoformat(), short.test_end.isoformat())
    return table


# ----------------------------------------------------------------------------- run folder


def write_robustness(run_dir: Path, prepared, result, artifact, registry, config, sweep=None) -> dict:
    """Write every robustness table and plot into ``run_dir/robustness``; return a summary.

    ``sweep`` (``lbml.sweeps``) runs the sensitivity grid's backtests as independent tasks."""
    out = run_dir / "robustness"
    out.mkdir(exist_ok=True)
    equity = result.record.equity_frame()
    summary: dict[str, Any] = {"folder": "robustness/"}
    grid = equity["equity"].resample(config.mc_frequency).last().dropna()
    returns = grid.pct_change().dropna().to_numpy()
    if len(returns) >= 4:
        mc = block_bootstrap(returns, float(equity["equity"].iloc[0]), config.mc_paths, config.block_length, config.seed)
        mc_table = pd.DataFrame({"percentile": PERCENTILES,
                                 "final_equity": [mc.final_equity[p] for p in PERCENTILES],
                                 "max_drawdown": [mc.max_drawdown[p] for p in PERCENTILES]})
        mc_table.to_csv(out / "monte_carlo.csv", index=False)
        mc.bands.to_csv(out / "monte_carlo_bands.csv", index_label="step")
        _plot_bands(mc, grid, out / "monte_carlo.png")
        summary["monte_carlo"] = {"n_paths": mc.n_paths, "block_length": mc.block_length, "grid": config.mc_frequency,
                                  "final_equity": mc.final_equity, "max_drawdown": mc.max_drawdown,
                                  "prob_loss": mc.prob_loss}
    regimes = regime_table(equity, config.regime_window_bars)
    regimes.to_csv(out / "regime_windows.csv", index=False)
    by_regime = regime_summary(regimes)
    by_regime.to_csv(out / "regimes.csv", index=False)
    if len(by_regime):
        _plot_regimes(by_regime, out / "regimes.png")
    summary["regimes"] = by_regime.to_dict(orient="records")
    bh = buy_and_hold_table(equity)
    bh.to_csv(out / "buy_and_hold.csv", index=False)
    summary["buy_and_hold"] = bh.to_dict(orient="records")
    if config.sweep:
        traded = result.edge_gate is None or result.edge_gate["status"] not in ("closed",)
        table = sensitivity_sweep(prepared, registry, artifact, config.sweep_days, traded, sweep)
        table.to_csv(out / "sensitivity.csv", index=False)
        _plot_sweep(table, out / "sensitivity.png")
        summary["sensitivity"] = {"window": list(table.attrs["window"]), "runs": int(len(table)),
                                  "max_reconciliation_error": float(table["reconciliation_error"].max())}
    return summary


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_bands(mc: MonteCarlo, grid: pd.Series, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 5))
    x = np.arange(len(mc.bands))
    ax.fill_between(x, mc.bands["p5"], mc.bands["p95"], alpha=0.2, label="5-95%")
    ax.fill_between(x, mc.bands["p25"], mc.bands["p75"], alpha=0.35, label="25-75%")
    ax.plot(x, mc.bands["p50"], lw=1.0, label="median")
    ax.plot(x, grid.to_numpy()[: len(x)], lw=1.0, color="black", label="actual")
    ax.set_title(f"block bootstrap, {mc.n_paths} paths, block {mc.block_length}")
    ax.set_xlabel("step")
    ax.set_ylabel("equity")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_regimes(table: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = table["regime"].tolist()
    x = np.arange(len(labels))
    ax.bar(x - 0.2, table["strategy_return"] * 100, 0.4, label="strategy")
    ax.bar(x + 0.2, table["buy_and_hold_return"] * 100, 0.4, label="buy & hold")
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel("return %")
    ax.set_title("return by regime (labelled from the previous window)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_sweep(table: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [f"{p}={v:.4g}" if p != "base" else "base" for p, v in zip(table["parameter"], table["value"])]
    ax.barh(labels, table["total_return"] * 100)
    ax.set_xlabel("total return % (sweep window)")
    ax.set_title("sensitivity, one input at a time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
