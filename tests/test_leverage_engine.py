"""Leverage models on the real engine: liquidations as engine events, interest, funding, reconciliation.

One model is trained on a short cut of the shipped crash scenario's data (Binance BNBUSDT, 9-14 May
2021) and reused by every backtest here; the strategies under test (LeveragedHold, KellyLeverage)
run on nautilus' BacktestEngine with the scenario's venue and leverage modules.
"""

import gzip
import math

import numpy as np
import pandas as pd
import pytest

from lbml.engine.instruments import infer_precision
from lbml.leverage.lending import LendingParams
from lbml.leverage.rates import accrued_interest
from lbml.report.metrics import compute_metrics
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model
from lbml.workflows.run import backtest

from .conftest import shared_file, without_edge_gate

CRASH_DIR = ("klines_1m", "binance_spot_2021-04-02_to_2021-05-14")


def _cut(src, dst, start, end, shift_from=None, factor=1.0, hole=None):
    frame = pd.read_csv(src)
    ts = pd.to_datetime(frame["open_time"], unit="ms")
    if hole is not None:  # a gap in the data; the window is extended by as many bars (same split)
        missing = (ts >= hole[0]) & (ts < hole[1])
        frame, ts = frame[~missing], ts[~missing]
        end = pd.Timestamp(end) + pd.Timedelta(minutes=int(missing.sum()))
    frame = frame[(ts >= start) & (ts < end)].copy()
    if shift_from is not None:
        # keep the price precision of the original window (the instrument's tick is inferred from it)
        decimals = infer_precision(frame["close"].to_numpy())
        after = pd.to_datetime(frame["open_time"], unit="ms") >= shift_from
        frame.loc[after, ["open", "high", "low", "close"]] *= factor
        frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].round(decimals)
    with gzip.open(dst, "wt") as fh:
        frame.to_csv(fh, index=False)
    return dst


def _scenario(tmp, bnb, btc, **sections):
    base = load_scenario("scenarios/crash_may2021.toml")
    base = base.with_data(paths=(bnb,), reference_paths=(btc,))
    update = {"split": base.split.model_copy(update={"train_fraction": 0.51})}
    for name, changes in sections.items():
        update[name] = getattr(base, name).model_copy(update=changes)
    return without_edge_gate(base.model_copy(update=update))  # mechanics: trade whatever the model's evidence


@pytest.fixture(scope="module")
def crash(tmp_path_factory, registry_module):
    tmp = tmp_path_factory.mktemp("crash")
    bnb = _cut(shared_file(*CRASH_DIR, "BNBUSDT-1m.csv.gz"), tmp / "BNBUSDT.csv.gz", "2021-05-10", "2021-05-14")
    btc = _cut(shared_file(*CRASH_DIR, "BTCUSDT-1m.csv.gz"), tmp / "BTCUSDT.csv.gz", "2021-05-10", "2021-05-14")
    scenario = _scenario(tmp, bnb, btc)
    prepared = prepare(scenario, registry_module)
    assert prepared.split.test_start < pd.Timestamp("2021-05-12 03:00", tz="UTC")
    train_model(prepared, registry_module, tmp / "model")
    return tmp, bnb, btc


@pytest.fixture(scope="module")
def registry_module():
    from lbml.plugins import load_registry

    return load_registry()


def _run(crash, registry, bnb=None, **sections):
    tmp, default_bnb, btc = crash
    scenario = _scenario(tmp, bnb or default_bnb, btc, **sections)
    prepared = prepare(scenario, registry)
    result, _ = backtest(prepared, registry, tmp / "model")
    metrics = compute_metrics(result)
    assert metrics["reconciliation_error"] < 1e-6 * metrics["initial_equity"]
    return result, metrics


def test_crash_liquidates_at_5x_and_not_at_1_5x(crash, registry_module):
    high, m_high = _run(crash, registry_module)
    low, m_low = _run(
        crash, registry_module, strategy={"max_leverage": 1.5}, leverage={"margin_leverage": 1.5}
    )
    assert m_high["n_liquidations"] >= 1 and m_high["costs"]["liquidation_penalty"] > 0
    assert m_low["n_liquidations"] == 0 and m_low["costs"]["liquidation_penalty"] == 0.0
    fills = high.record.fills_frame()
    liq = fills[fills.liquidation]
    entry = fills.iloc[0]
    assert entry.side == "BUY" and not entry.liquidation
    # A STOP_MARKET reduce-only order filled at (about) the isolated-margin liquidation price:
    # entry·(1 − 1/L)/(1 − mmr), moved only by the costs booked against the margin since entry.
    expected = entry.price * (1 - 1 / 5.0) / (1 - 0.005)
    first = liq.iloc[0]
    assert first.order_type == "STOP_MARKET" and first.side == "SELL"
    assert first.quantity == pytest.approx(entry.quantity)
    assert abs(first.price - expected) / expected < 0.002
    event = high.liquidations[0]
    assert 0.0 <= event["penalty"] <= 0.005 * first.quantity * first.price + 1e-9
    # isolated margin: the position never loses more than its margin (entry notional / 5), up to the
    # closing slippage charged after the fill (a separate ledger)
    trade = high.record.trades_frame().iloc[0]
    margin = entry.quantity * entry.price / 5.0
    assert -trade.realized_pnl + event["penalty"] <= margin + 1e-6
    # the same bars at 1.5x never go below the 1.5x liquidation price
    risk = low.record.risk_frame()
    assert (risk["health"] > 1.0).all()


def test_aave_3x_partial_liquidation_with_close_factor_and_bonus(crash, registry_module):
    result, metrics = _run(
        crash, registry_module,
        strategy={"max_leverage": 3.0},
        leverage={"model": "aave_lending", "borrow_apr": 0.05},
    )
    fills = result.record.fills_frame()
    entry = fills.iloc[0]
    liq = fills[fills.liquidation]
    assert len(liq) >= 1
    first = liq.iloc[0]
    params = LendingParams()
    # at HF = 1 a long's debt is q·P·LT, the liquidator repays half of it and seizes ×(1 + bonus)
    assert first.quantity == pytest.approx(0.5 * params.liquidation_threshold * 1.1 * entry.quantity, rel=2e-3)
    assert first.quantity < entry.quantity
    assert result.liquidations[0]["penalty"] == pytest.approx(first.quantity * first.price * 0.1 / 1.1)
    assert metrics["costs"]["borrow"] > 0
    hf = result.record.risk_frame()["health"]
    assert hf[hf < math.inf].min() < 1.05


def test_gap_through_fills_at_the_worse_open_and_closes_in_full_below_hf_095(crash, registry_module, tmp_path):
    tmp, _, _ = crash
    gap_at = pd.Timestamp("2021-05-12 12:00")
    gapped = _cut(shared_file(*CRASH_DIR, "BNBUSDT-1m.csv.gz"), tmp_path / "BNBUSDT.csv.gz", "2021-05-10",
                  "2021-05-14", shift_from=gap_at, factor=0.8)
    result, metrics = _run(
        crash, registry_module, bnb=gapped,
        strategy={"max_leverage": 3.0},
        leverage={"model": "aave_lending", "borrow_apr": 0.05},
    )
    fills = result.record.fills_frame()
    liq = fills[fills.liquidation]
    stop = liq.iloc[0]
    raw = pd.read_csv(gapped)
    gap_open = raw.loc[pd.to_datetime(raw.open_time, unit="ms") == gap_at, "open"].item()
    # the stop costs the gap's open: nautilus 1.221 fills it at its trigger and the gap-through module
    # charges it down to the open; 1.231 fills it at the open itself and the module charges nothing
    gap = result.gap_slippage
    charged = gap.entries[0][1] if gap.entries else 0.0
    assert stop.price >= gap_open
    assert stop.price - charged / stop.quantity == pytest.approx(gap_open, rel=1e-9)
    # HF at the gap is below 0.95: the rest of the position is liquidated too (100% close factor)
    assert len(liq) >= 2 and liq.iloc[1].order_type == "MARKET"
    assert metrics["n_liquidations"] >= 2


def test_borrow_interest_over_a_holding_period_matches_the_closed_form(crash, registry_module):
    apr = 0.12
    result, metrics = _run(
        crash, registry_module,
        strategy={"max_leverage": 2.0, "max_holding_bars": 600},
        costs={"maker_fee": 0.0, "taker_fee": 0.0, "slippage_bps": 0.0},
        leverage={"model": "aave_lending", "borrow_rate": "constant", "borrow_apr": apr, "accrual_minutes": 37},
    )
    fills = result.record.fills_frame()
    open_fill, close_fill = fills.iloc[0], fills.iloc[1]
    assert open_fill.side == "BUY" and close_fill.side == "SELL"
    debt0 = open_fill.quantity * open_fill.price - result.starting_balance
    held = [(ts, amount) for ts, amount in result.borrow.entries if ts <= close_fill.ts]
    paid = sum(a for _, a in held)
    expected = accrued_interest(debt0, apr, open_fill.ts, close_fill.ts)
    assert len(held) > 10
    assert paid == pytest.approx(expected, rel=1e-9)
    assert metrics["costs"]["borrow"] == pytest.approx(result.borrow.total)


def test_kelly_with_trailing_stop_volatility_slippage_and_gas_reconciles(crash, registry_module):
    result, metrics = _run(
        crash, registry_module,
        strategy={"class_path": "strategies.kelly_leverage:KellyLeverage", "max_leverage": 3.0,
                  "max_position_fraction": 1.0, "trailing_stop": True, "stop_loss_pct": 0.004,
                  "take_profit_pct": 0.02, "max_holding_bars": 240, "kelly_fraction": 0.5},
        costs={"slippage_model": "volatility", "slippage_vol_k": 0.5, "slippage_bps": 0.5, "gas_per_tx": 0.25},
        leverage={"model": "aave_lending"},
    )
    fills = result.record.fills_frame()
    assert len(fills) > 0, "the strategy should trade in the sell-off window"
    assert result.gas.total == pytest.approx(0.25 * len(fills))
    assert metrics["costs"]["fees"] == pytest.approx(fills["commission"].sum())
    assert metrics["costs"]["gas"] == pytest.approx(result.gas.total)
    taker = fills[fills.liquidity == "TAKER"]
    floor = (taker.quantity * taker.price).sum() * 0.5e-4
    assert result.slippage.total >= floor - 1e-9
    assert "TRAILING_STOP_MARKET" in set(fills.order_type)


def test_leverage_engine_has_no_look_ahead(crash, registry_module, tmp_path):
    """Changing prices after a cut changes nothing the leverage engine did before it."""
    cut = pd.Timestamp("2021-05-13 00:00")
    later = _cut(shared_file(*CRASH_DIR, "BNBUSDT-1m.csv.gz"), tmp_path / "BNBUSDT.csv.gz", "2021-05-10",
                 "2021-05-14", shift_from=cut, factor=0.7)
    kwargs = {"strategy": {"max_leverage": 3.0}, "leverage": {"model": "aave_lending", "borrow_apr": 0.05}}
    base, _ = _run(crash, registry_module, **kwargs)
    moved, _ = _run(crash, registry_module, bnb=later, **kwargs)
    cut_ns = cut.tz_localize("UTC").value
    risk_a = np.array([r for r in base.record.risk if r[0] < cut_ns], dtype=float)
    risk_b = np.array([r for r in moved.record.risk if r[0] < cut_ns], dtype=float)
    np.testing.assert_array_equal(risk_a, risk_b)  # NaN (no liquidation price while flat) equals NaN
    assert len(risk_a) > 1000
    for a, b in ((base.record.fills, moved.record.fills), (base.borrow.entries, moved.borrow.entries),
                 (base.liquidations, moved.liquidations)):
        before_a = [r for r in a if (r["ts"] if isinstance(r, dict) else r[0]) < cut_ns]
        before_b = [r for r in b if (r["ts"] if isinstance(r, dict) else r[0]) < cut_ns]
        assert before_a == before_b
    assert len(moved.record.risk) == len(base.record.risk)
    assert not np.array_equal(np.array(base.record.risk, dtype=float), np.array(moved.record.risk, dtype=float),
                              equal_nan=True)


NS_PER_HOUR = 3_600_000_000_000


def test_borrow_is_charged_on_the_loan_for_every_hour_held_across_a_data_gap(crash, registry_module, tmp_path):
    """``[leverage] model = none``: a 2.9x long pays ``borrow_apr_quote`` on its loan, notional − equity
    (q·E − cash), for every hour boundary it is held over, the 3h12m hole in the data included (the
    2021 files have 151- and 285-minute gaps), and each equity row marked at a boundary already has
    that boundary's interest posted. The ledger is rebuilt by hand from the run's fills."""
    tmp, _, _ = crash
    hole = (pd.Timestamp("2021-05-12 10:17"), pd.Timestamp("2021-05-12 13:29"))
    bnb, btc = (_cut(shared_file(*CRASH_DIR, f"{s}-1m.csv.gz"), tmp_path / f"{s}.csv.gz", "2021-05-10", "2021-05-14",
                     hole=hole) for s in ("BNBUSDT", "BTCUSDT"))
    apr = 0.5
    result, _ = _run((tmp, bnb, btc), registry_module, bnb=bnb, strategy={"max_leverage": 2.9},
                     costs={"borrow_apr_quote": apr}, leverage={"model": "none", "funding": True})
    assert len(result.record.fills) == 1  # one long, held to the end (no liquidation without a model)
    entry = result.record.fills[0]
    assert entry["side"] == "BUY"
    loan_basis = entry["quantity"] * entry["price"]  # q·E: the notional at entry
    cash = result.starting_balance - entry["commission"] - result.slippage.total
    per_year = apr / (365 * 24)
    last, intervals, charged = entry["ts"], [], {}
    for ts, amount in result.borrow.entries:
        n = ts // NS_PER_HOUR - last // NS_PER_HOUR  # hour boundaries in (last, ts]
        assert amount == pytest.approx((loan_basis - cash) * per_year * n, rel=1e-9)
        cash -= amount
        intervals.append(n)
        charged[ts] = cash
        last = ts
    end = result.record.equity[-1][0]
    assert sum(intervals) == end // NS_PER_HOUR - entry["ts"] // NS_PER_HOUR
    assert max(intervals) >= 3  # the hole's hours were charged when the data came back
    # every equity row after the entry carries exactly the interest posted up to its time
    balance = result.starting_balance - entry["commission"] - result.slippage.total
    rows = [(ts, b) for ts, _, b, _ in result.record.equity if ts > entry["ts"]]
    for ts, recorded in rows:
        balance = charged.get(ts, balance)
        assert recorded == pytest.approx(balance, rel=0, abs=1e-6), pd.Timestamp(ts, tz="UTC")
    assert sum(1 for ts, _ in rows if ts in charged) > 20


def test_an_isolated_entry_is_sized_net_of_its_costs_and_the_crash_leaves_equity_positive(crash, registry_module):
    """The shipped crash at 5x on isolated margin (it used to end at -100.17%): the entry is sized so that
    its margin (notional / 5) at the close it was decided on, plus its own fee and slippage, is the cash."""
    result, metrics = _run(crash, registry_module)
    entry = result.record.fills[0]
    decided_at = [close for ts, _, _, close in result.record.equity if ts < entry["ts"]][-1]
    assert entry["side"] == "BUY" and result.n_liquidations >= 1
    assert 0.9999 < entry["quantity"] * decided_at * (1 / 5.0 + 0.0004 + 0.0002) / result.starting_balance <= 1.0
    assert min(e for _, e, _, _ in result.record.equity) >= 0.0 and metrics["negative_equity"] is None


def test_an_isolated_position_loses_at_most_its_margin_through_a_gap(crash, registry_module, tmp_path):
    """A 20% gap through the 5x liquidation price: the stop fills at the gap's open, which takes more than
    the margin. The account keeps the cash after the entry minus the margin (never below zero); the
    insurance fund absorbs the rest, booked as a negative penalty. Rebuilt by hand from fills and ledgers."""
    tmp, _, _ = crash
    gapped = _cut(shared_file(*CRASH_DIR, "BNBUSDT-1m.csv.gz"), tmp_path / "BNBUSDT.csv.gz", "2021-05-10",
                  "2021-05-14", shift_from=pd.Timestamp("2021-05-12 12:00"), factor=0.8)
    result, metrics = _run(crash, registry_module, bnb=gapped)
    entry, *later = result.record.fills
    held, exits = entry["quantity"], []
    for fill in later:  # the fills that closed the first position
        exits.append(fill)
        held -= fill["quantity"]
        if held <= 1e-9:
            break
    assert entry["side"] == "BUY" and exits and all(f["liquidation"] for f in exits) and abs(held) <= 1e-9
    closed = exits[-1]["ts"]
    slippage = dict(result.slippage.entries)  # one charge per fill time
    entry_cash = result.starting_balance - entry["commission"] - slippage[entry["ts"]]
    margin = entry["quantity"] * entry["price"] / 5.0
    pnl = sum(f["quantity"] * (f["price"] - entry["price"]) for f in exits)
    penalties = sum(e["penalty"] for e in result.liquidations if e["ts"] <= closed)
    charged = (sum(f["commission"] for f in exits) + sum(slippage.get(f["ts"], 0.0) for f in exits)
               + sum(a for ts, a in result.gap_slippage.entries if ts <= closed) + penalties)
    uncapped = entry_cash + pnl - charged
    floor = max(0.0, entry_cash - margin)
    assert uncapped < floor - 100.0  # the gap takes far more than the margin before the cap ...
    after = next(balance for ts, _, balance, _ in result.record.equity if ts > closed)
    assert after == pytest.approx(floor, rel=0, abs=1e-6)  # ... and the cap holds the cash there
    booked = sum(a for ts, a in result.liquidation.entries if ts <= closed)
    assert booked == pytest.approx(penalties - (floor - uncapped), rel=1e-9)
    assert min(e for _, e, _, _ in result.record.equity) >= 0.0 and metrics["negative_equity"] is None


def _bars(path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    return raw.set_index(pd.to_datetime(raw["open_time"], unit="ms", utc=True) + pd.Timedelta(minutes=1))


def test_bar_orders_fill_at_the_next_bar_open_and_take_at_most_a_share_of_its_volume(crash, registry_module):
    """Bar data: an order decided on bar t's close fills at bar t+1's open (``[venue] bar_fill``), not a
    whole bar later at its close, and an entry takes at most ``max_participation`` of the last bar's volume."""
    _, bnb, _ = crash
    bars = _bars(bnb)
    opened, _ = _run(crash, registry_module, venue={"max_participation": 0.002})
    closed, _ = _run(crash, registry_module, venue={"bar_fill": "next_close"})
    for result, column in ((opened, "open"), (closed, "close")):
        entry = result.record.fills[0]
        ts = pd.Timestamp(entry["ts"], tz="UTC")
        assert entry["price"] == pytest.approx(bars.loc[ts, column], rel=1e-12), column
    entry = opened.record.fills[0]
    decided = [ts for ts, *_ in opened.record.equity if ts < entry["ts"]][-1]
    cap = 0.002 * bars.loc[pd.Timestamp(decided, tz="UTC"), "volume"]
    # the cap binds, rounded down to the size step (at most 1e-3 here): 5x would buy far more
    assert cap - 1e-3 <= entry["quantity"] <= cap
    assert closed.record.fills[0]["quantity"] > 10 * cap


def test_with_ticks_the_equity_marked_at_an_hour_already_has_that_hours_interest(tmp_path, registry_module):
    """Tick data (the paper-trading path: bars built by the engine from trades): the interest due at an
    hour boundary is posted before the bar closing there is marked, so every equity row rebuilds from
    the fills and ledgers up to its time (a session ending on the hour reconciles)."""
    from .conftest import without_calibration

    base = load_scenario("scenarios/default.toml").with_data(days=3)
    scenario = without_edge_gate(without_calibration(base.model_copy(update={
        "strategy": base.strategy.model_copy(update={"class_path": "strategies.leveraged_hold:LeveragedHold",
                                                     "max_leverage": 2.9, "max_position_fraction": 1.0,
                                                     "max_holding_bars": 10080}),
        "costs": base.costs.model_copy(update={"borrow_apr_quote": 0.5}),
        "venue": base.venue.model_copy(update={"starting_balance": 3_000.0}),  # 2.9x within a bar's volume
        "model": base.model.model_copy(update={"params": {**base.model.params, "n_estimators": 20}}),
    })))
    prepared = prepare(scenario, registry_module)
    train_model(prepared, registry_module, tmp_path / "model")
    result, _ = backtest(prepared, registry_module, tmp_path / "model")
    fills = result.record.fills
    assert result.mode == "ticks" and fills and len({f["order_id"] for f in fills}) == 1  # one entry, held
    commission, entered = sum(f["commission"] for f in fills), max(f["ts"] for f in fills)
    costs = sorted(result.borrow.entries + result.slippage.entries + result.gas.entries)
    hours = [ts for ts, _ in result.borrow.entries]
    assert len(hours) > 10
    for ts, _, balance, _ in result.record.equity:
        if ts in hours and ts > entered:  # after the entry only the ledgers move the cash
            paid = sum(a for t, a in costs if t <= ts)
            assert balance == pytest.approx(result.starting_balance - commission - paid, rel=0, abs=1e-6)
