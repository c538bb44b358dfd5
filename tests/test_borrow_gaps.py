"""Borrow interest through the real data gaps of the 2021 Binance files, rebuilt from the run folder.

The 2021 spot files miss 150 minutes on 2021-04-20 (02:00-04:29) and 284 minutes on 2021-04-25
(04:01-08:44), as the shared data's README says. A ``[leverage] model = "none"`` long at 2.9x
(``LeveragedHold``: one position held through both gaps) must pay ``borrow_apr_quote`` on its loan,
notional at entry − equity = q·E − cash, for every hour boundary it is held over, the gaps' hours
included. The ledger is rebuilt by hand from the run folder's CSVs (fills, ledgers, equity), not
from lbml's objects.
"""

import gzip
import json

import pandas as pd
import pytest

from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.run import run_scenario

from .conftest import shared_file, without_calibration, without_edge_gate

CRASH_DIR = ("klines_1m", "binance_spot_2021-04-02_to_2021-05-14")
NS_PER_HOUR = 3_600_000_000_000
GAPS = ((pd.Timestamp("2021-04-20 02:00", tz="UTC"), 150), (pd.Timestamp("2021-04-25 04:01", tz="UTC"), 284))
APR = 0.5


def _cut(src, dst, start: str, end: str):
    frame = pd.read_csv(src)
    ts = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
    frame = frame[(ts >= pd.Timestamp(start, tz="UTC")) & (ts < pd.Timestamp(end, tz="UTC"))]
    with gzip.open(dst, "wt") as fh:
        frame.to_csv(fh, index=False)
    return dst


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gaps")
    bnb, btc = (_cut(shared_file(*CRASH_DIR, f"{s}-1m.csv.gz"), tmp / f"{s}.csv.gz", "2021-04-17", "2021-04-26")
                for s in ("BNBUSDT", "BTCUSDT"))
    base = load_scenario("scenarios/crash_may2021.toml").with_data(paths=(bnb,), reference_paths=(btc,))
    update = {
        "split": base.split.model_copy(update={"train_fraction": 0.25}),  # trades from 2021-04-19
        "strategy": base.strategy.model_copy(update={"max_leverage": 2.9}),  # one long, held to the end
        "costs": base.costs.model_copy(update={"borrow_apr_quote": APR}),
        "leverage": base.leverage.model_copy(update={"model": "none"}),
        "robustness": base.robustness.model_copy(update={"enabled": False}),
        "report": base.report.model_copy(update={"tearsheet": False}),
    }
    scenario = without_edge_gate(without_calibration(base.model_copy(update=update)))
    folder, _ = run_scenario(scenario, load_registry(), tmp / "runs")
    return folder


@pytest.mark.timeout(600)
def test_borrow_through_the_real_gaps_matches_a_ledger_rebuilt_from_the_run_folder(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fills = pd.read_csv(run_dir / "fills.csv", parse_dates=["ts"])
    ledgers = pd.read_csv(run_dir / "ledgers.csv", parse_dates=["ts"])
    equity = pd.read_csv(run_dir / "equity.csv", index_col=0, parse_dates=True)
    assert len(fills) == 1 and fills.side.iloc[0] == "BUY"  # one long, never closed (no liquidation model)
    entry = fills.iloc[0]
    start_ns, end_ns = entry.ts.value, equity.index[-1].value
    for gap, minutes in GAPS:  # both gaps are inside the holding period, and really in the data
        assert start_ns < gap.value < end_ns
        later = equity.index[equity.index > gap]
        assert (later[0] - equity.index[equity.index <= gap][-1]) == pd.Timedelta(minutes=minutes + 1)

    slippage = ledgers[ledgers.kind == "slippage"]
    borrow = ledgers[ledgers.kind == "borrow"]
    cash = metrics["initial_equity"] - entry.commission - slippage.amount.sum()  # one fill: one slippage charge
    loan_basis = entry.quantity * entry.price  # q·E
    per_hour = APR / (365 * 24)
    last, hours, balance_after = start_ns, [], {}
    for ts, amount in zip(borrow.ts, borrow.amount):
        n = ts.value // NS_PER_HOUR - last // NS_PER_HOUR  # hour boundaries in (last, ts]
        assert n >= 1 and amount == pytest.approx((loan_basis - cash) * per_hour * n, rel=1e-9), ts
        cash -= amount
        hours.append((ts, n))
        balance_after[ts] = cash
        last = ts.value
    # every hour boundary of the holding period is paid once, the gaps' included
    assert sum(n for _, n in hours) == end_ns // NS_PER_HOUR - start_ns // NS_PER_HOUR
    after_gaps = {ts: n for ts, n in hours if n > 1}
    assert sorted(after_gaps.values()) == [2, 4]  # 03:00 and 04:00 on 04-20; 05:00 to 08:00 on 04-25
    assert [ts for ts in after_gaps] == [equity.index[equity.index > gap][0] for gap, _ in GAPS]
    assert metrics["costs"]["borrow"] == pytest.approx(borrow.amount.sum(), rel=1e-12)
    # each equity row carries the interest posted up to its time (charged before the bar is marked)
    balance = metrics["initial_equity"] - entry.commission - slippage.amount.sum()
    for ts, recorded in equity.loc[equity.index > entry.ts, "balance"].items():
        balance = balance_after.get(ts, balance)
        assert recorded == pytest.approx(balance, rel=0, abs=1e-6), ts
    assert metrics["reconciliation_error"] < 1e-6 * metrics["initial_equity"]
