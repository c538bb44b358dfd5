"""Every shipped scenario runs end to end (train → nautilus backtest → run folder) and reconciles.

Synthetic scenarios run on 2 days and the BTC perpetual on the first 3 days of its data, to keep the
suite fast; the crash scenario is exercised on its sell-off window in ``test_leverage_engine.py``.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.run import run_scenario

from .conftest import ROOT, shared_file, without_calibration

COSTS = {"fees", "slippage", "borrow", "funding", "liquidation_penalty", "gas", "total"}
BYBIT = ("klines_1m", "bybit_linear_2025-05-30_to_2025-06-29")


@pytest.fixture(autouse=True)
def no_engine_errors(capfd):
    """A shipped scenario runs without one ERROR line in nautilus' log (issue #18: the perpetual
    logged 'Cannot apply event ... not found in the cache' 78 times and still passed).

    nautilus' logger writes to the process's stdout from Rust, so it is captured at the descriptor.
    """
    yield
    out, err = capfd.readouterr()
    errors = [line for line in (out + err).splitlines() if "[ERROR]" in line]
    assert not errors, f"{len(errors)} engine ERROR line(s), first: {errors[0][:300]}"


def test_every_shipped_scenario_parses():
    names = sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))
    assert {"aave_wbnb_3x", "btc_perp_funding", "crash_may2021", "random_walk", "planted_edge"} <= set(names)
    for name in names:
        scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
        assert scenario.name == name


def _quick(scenario, **robustness):
    """Fewer trees, no calibration (the scenario's model is not what these tests check), robustness as asked."""
    params = {**scenario.model.params, "n_estimators": 40}
    rob = scenario.robustness.model_copy(update={"enabled": False, **robustness})
    model = scenario.model.model_copy(update={"params": params})
    return without_calibration(scenario.model_copy(update={"model": model, "robustness": rob}))


def _check_run(run_dir: Path, metrics: dict) -> pd.DataFrame:
    assert COSTS <= set(metrics["costs"])  # plus gas and the total
    assert "n_liquidations" in metrics
    assert metrics["reconciliation_error"] < 1e-6 * metrics["initial_equity"]
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["costs"] == pytest.approx(metrics["costs"])
    for name in ("risk.csv", "risk.png", "ledgers.csv", "liquidations.csv", "equity.png"):
        assert (run_dir / name).is_file(), name
    ledgers = pd.read_csv(run_dir / "ledgers.csv")
    by_kind = ledgers.groupby("kind")["amount"].sum()
    assert by_kind.get("funding", 0.0) == pytest.approx(metrics["costs"]["funding"], abs=1e-9)
    assert by_kind.get("borrow", 0.0) == pytest.approx(metrics["costs"]["borrow"], abs=1e-9)
    assert by_kind.get("liquidation_penalty", 0.0) == pytest.approx(metrics["costs"]["liquidation_penalty"], abs=1e-9)
    return ledgers


@pytest.mark.parametrize("name", ["random_walk", "planted_edge"])
def test_synthetic_scenarios_run_and_reconcile(name, tmp_path):
    scenario = _quick(load_scenario(f"scenarios/{name}.toml").with_data(days=2))
    run_dir, metrics = run_scenario(scenario, load_registry(), tmp_path)
    _check_run(run_dir, metrics)
    assert metrics["leverage_model"] == scenario.leverage.model
    # stops at 0.8% sit far inside every liquidation price the caps allow (shorts included)
    assert metrics["n_liquidations"] == 0


def test_aave_scenario_with_robustness_folder(tmp_path):
    scenario = _quick(load_scenario("scenarios/aave_wbnb_3x.toml").with_data(days=2),
                      enabled=True, sweep_days=0.1, mc_frequency="5min")
    run_dir, metrics = run_scenario(scenario, load_registry(), tmp_path)
    _check_run(run_dir, metrics)
    rob = run_dir / "robustness"
    for name in ("monte_carlo.csv", "monte_carlo.png", "regimes.csv", "regimes.png", "sensitivity.csv",
                 "sensitivity.png", "buy_and_hold.csv"):
        assert (rob / name).is_file(), name
    assert metrics["robustness"]["monte_carlo"]["n_paths"] >= 1000
    if metrics.get("tearsheet"):
        page = (run_dir / "tearsheet.html").read_text()
        assert "lbml-costs" in page and "liquidation_penalty" in page and "n_liquidations" in page
    sweep = pd.read_csv(rob / "sensitivity.csv")
    assert set(sweep["parameter"]) == {"base", "fees", "slippage_bps", "borrow_stress", "max_leverage", "kelly_fraction"}
    assert (sweep["reconciliation_error"] < 1e-6 * metrics["initial_equity"]).all()
    if metrics["n_trades"]:
        assert metrics["costs"]["borrow"] > 0.0


def test_btc_perpetual_pays_funding_at_settlements(tmp_path):
    btc = shared_file(*BYBIT, "BTCUSDT_1m.csv")
    eth = shared_file(*BYBIT, "ETHUSDT_1m.csv")
    funding = shared_file("funding", "BTCUSDT_funding_rate_8h.csv.gz")
    cut = {}
    for path in (btc, eth):
        lines = path.read_text().splitlines()[: 1 + 3 * 1440]
        cut[path.name] = tmp_path / path.name
        cut[path.name].write_text("\n".join(lines) + "\n")
    scenario = load_scenario("scenarios/btc_perp_funding.toml").with_data(
        paths=(cut[btc.name],), reference_paths=(cut[eth.name],), funding_paths=(funding,)
    )
    # Funding mechanics: a position held through the settlements (the 3-day model's EV rule and gate
    # rightly trade little), so every settlement in the window is charged.
    scenario = scenario.model_copy(update={"strategy": scenario.strategy.model_copy(
        update={"class_path": "strategies.leveraged_hold:LeveragedHold"})})
    run_dir, metrics = run_scenario(_quick(scenario), load_registry(), tmp_path / "runs")
    ledgers = _check_run(run_dir, metrics)
    paid = ledgers[ledgers.kind == "funding"].copy()
    if not len(paid):
        pytest.skip("the model held no position across a settlement in this window")
    paid["ts"] = pd.to_datetime(paid["ts"], utc=True)
    series = pd.read_csv(funding)
    times = pd.to_datetime(series["funding_time"], unit="ms", utc=True)
    rates = pd.Series(series["funding_rate"].to_numpy(), index=times)
    risk = pd.read_csv(run_dir / "risk.csv", index_col=0, parse_dates=True)
    for ts, amount in zip(paid["ts"], paid["amount"]):
        # charged at the first bar at or after a settlement time, with that settlement's rate (as-of)
        settle = rates.index[rates.index <= ts].max()
        assert ts - settle < pd.Timedelta(minutes=2)
        # the venue marks the position when the settlement bar's first price (its open) reaches it;
        # the risk table marks at the bar's close: the two differ by that bar's move (< 0.2 %)
        assert amount == pytest.approx(rates[settle] * risk.loc[ts, "exposure"], rel=2e-3)
    assert np.sign(metrics["costs"]["funding"]) in (-1.0, 0.0, 1.0)


def test_costs_section_renders_the_cost_keys_present():
    from lbml.report.tearsheet import TRADES, cost_rows, table

    from .report_support import assert_shown_equals, shown_cells

    metrics = {"costs": dict.fromkeys(sorted(COSTS), 1.5), "n_liquidations": 2, "reconciliation_error": 1e-9}
    page = table("Costs", metrics, cost_rows(metrics))
    assert "lbml-costs" in page and "gross_pnl" not in page and "edge_gate" not in page
    assert set(shown_cells(page)) == {f"costs.{name}" for name in COSTS} | {"reconciliation_error"}
    full = metrics | {
        "gross_pnl": 1234.5, "total_costs": 509.1, "costs_over_gross_pnl": 0.4123, "cost_per_round_trip": 12.345,
        "cost_per_round_trip_pct": 0.00123456, "traded_notional": 4.2e6, "turnover": 41.5,
        "break_even_win_rate": 0.5312, "win_rate": 0.48, "win_rate_net": 0.41,
        "costs": dict.fromkeys(["fees", "slippage", "borrow", "funding", "liquidation_penalty", "gas", "total"], 2.25),
        "edge_gate": {"status": "closed", "reason": "costs exceed the gross edge", "evidence_auc": 0.51},
    }
    cells = shown_cells(table("Costs", full, cost_rows(full)) + table("Trades", full, TRADES))
    assert {"gross_pnl", "total_costs", "costs.total", "costs.gas", "costs_over_gross_pnl", "cost_per_round_trip",
            "cost_per_round_trip_pct", "turnover", "edge_gate.status", "edge_gate.reason", "break_even_win_rate",
            "win_rate_net"} <= set(cells)
    assert cells["edge_gate.reason"] == "costs exceed the gross edge" and cells["costs_over_gross_pnl"] == "41.23%"
    assert cells["cost_per_round_trip_pct"] == "0.1235%"
    for key, shown in cells.items():
        value = full
        for part in key.split("."):
            value = value[part]
        assert_shown_equals(key, shown, value, {})
