"""An auditor with only the run folder: rebuild the accounting and the statistics lbml reports.

Nothing here calls lbml's own statistics or accounting code: the PSR and DSR are written from
Bailey & López de Prado (2012, 2014), the ledger is rebuilt from fills.csv and ledgers.csv, and the
drawdown from equity.csv, then compared with metrics.json.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lbml.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EULER_GAMMA = 0.5772156649015329


def _psr(r: np.ndarray, sr_star: float) -> float:
    """Probabilistic Sharpe ratio (Bailey & López de Prado 2012, eq. 11), per-observation Sharpe."""
    n = len(r)
    sr = r.mean() / r.std(ddof=1)
    g3 = stats.skew(r, bias=False)
    g4 = stats.kurtosis(r, fisher=False, bias=False)
    return float(stats.norm.cdf((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)))


def _dsr(r: np.ndarray, n_trials: int, variance: float) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014): PSR against the expected maximum Sharpe
    of N skill-less trials, SR0 = √V·((1−γ)Φ⁻¹(1−1/N) + γΦ⁻¹(1−1/(N·e)))."""
    if n_trials <= 1:
        return _psr(r, 0.0)
    sr0 = math.sqrt(variance) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials)
                                 + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n_trials * math.e)))
    return _psr(r, sr0)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    text = (ROOT / "scenarios" / "default.toml").read_text().replace("days = 30", "days = 10").replace(
        'name = "default"', 'name = "audit"')
    scenario = tmp / "audit.toml"
    scenario.write_text(text)
    out = tmp / "run"
    import os

    os.environ["LBML_PATHS__RUNS_DIR"] = str(tmp / "runs")
    try:
        assert main(["backtest", str(scenario), "--out", str(out), "--ignore-edge-gate"]) == 0
    finally:
        del os.environ["LBML_PATHS__RUNS_DIR"]
    return out


def test_accounting_rebuilt_from_fills_and_ledgers(run_folder):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    fills = pd.read_csv(run_folder / "fills.csv")
    ledgers = pd.read_csv(run_folder / "ledgers.csv")
    equity = pd.read_csv(run_folder / "equity.csv", index_col=0)
    assert metrics["n_trades"] > 0
    signed = np.where(fills["side"] == "BUY", 1.0, -1.0) * fills["quantity"]
    cash = metrics["initial_equity"] - (signed * fills["price"]).sum() - fills["commission"].sum() - ledgers["amount"].sum()
    position = signed.sum()
    rebuilt = cash + position * equity["close"].iloc[-1]
    assert rebuilt == pytest.approx(metrics["final_equity"], abs=1e-6 * metrics["initial_equity"])
    assert fills["commission"].sum() == pytest.approx(metrics["costs"]["fees"], rel=1e-9)
    by_kind = ledgers.groupby("kind")["amount"].sum()
    assert by_kind.get("slippage", 0) + by_kind.get("gap_slippage", 0) == pytest.approx(metrics["costs"]["slippage"], rel=1e-9)
    assert metrics["costs"]["total"] == pytest.approx(fills["commission"].sum() + ledgers["amount"].sum(), rel=1e-9)
    trades = pd.read_csv(run_folder / "trades.csv")
    assert trades["net_pnl"].sum() == pytest.approx(trades["gross_pnl"].sum() - trades["total_cost"].sum(), rel=1e-9)


def test_out_of_sample_statistics_from_the_papers(run_folder):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    trained = metrics["training_metrics"]
    oof = pd.read_csv(run_folder / "oof_trades.csv")
    r = oof["net_return"].to_numpy()
    assert len(r) == trained["n_oos_trades"] > 3
    assert r.mean() == pytest.approx(trained["oos_mean_trade_return"], rel=1e-12)
    assert _psr(r, 0.0) == pytest.approx(metrics["psr"], abs=1e-12)
    # N is the true trial count (here: one configuration × the EV margins it tried).
    assert metrics["n_trials"] == len(trained["ev_margin_sharpes"])
    variance = max(1 / (len(r) - 1), trained["trial_variance"])
    assert _dsr(r, metrics["n_trials"], variance) == pytest.approx(metrics["dsr"], abs=1e-12)
    gate = metrics["edge_gate"]
    assert gate["dsr"] == pytest.approx(metrics["dsr"]) and gate["n_oos_trades"] == len(r)


def test_drawdown_and_sharpe_from_the_equity_curve(run_folder):
    metrics = json.loads((run_folder / "metrics.json").read_text())
    equity = pd.read_csv(run_folder / "equity.csv", index_col=0, parse_dates=True)["equity"]
    assert (equity / equity.cummax() - 1).min() == pytest.approx(metrics["max_drawdown"], abs=1e-12)
    # Daily returns: a bar closing at 00:00 ends the previous day.
    daily = equity.groupby((equity.index - pd.Timedelta(1, "ns")).floor("D")).last()
    returns = pd.concat([pd.Series([equity.iloc[0]]), daily.reset_index(drop=True)]).pct_change().dropna()
    sharpe = returns.mean() / returns.std(ddof=1) * math.sqrt(metrics.get("periods_per_year", 365))
    assert sharpe == pytest.approx(metrics["sharpe"], rel=1e-9)
