"""One pricing of a round trip: the cost model by hand, the venue built from the same rates, the
bracket payoff against a plain loop, and the EV rule's break-even from the payoff it really has."""

import math

import numpy as np
import pandas as pd
import pytest

from lbml.cost_model import CostModel, cost_model_for
from lbml.research.payoff import estimate_payoff, simulate_brackets
from lbml.pricing import Pricing, kelly_params_for
from lbml.scenario import load_scenario
from lbml.sizing import KellyParams, Payoff, decide


def test_round_trip_cost_by_hand():
    cm = CostModel(taker_fee=0.0004, maker_fee=0.0002, slippage_rate=0.0001, long_borrow_apr=0.08,
                   short_borrow_apr=0.05, gas_per_tx=0.5)
    hold = 60.0  # minutes
    long = cm.round_trip(1, 3.0, hold, notional=30_000.0)
    years = 60.0 / (365 * 24 * 60)
    assert long.fees == pytest.approx(0.0008)
    assert long.slippage == pytest.approx(0.0002)
    assert long.financing == pytest.approx(2.0 / 3.0 * 0.08 * years)  # the loan is 2/3 of a 3x notional
    assert long.gas == pytest.approx(1.0 / 30_000.0)
    assert long.total == pytest.approx(0.0008 + 0.0002 + 2.0 / 3.0 * 0.08 * years + 1.0 / 30_000.0)
    assert cm.round_trip(1, 0.8, hold).financing == 0.0  # no loan below 1x
    assert cm.round_trip(-1, 0.8, hold).financing == pytest.approx(0.05 * years)  # a short borrows it all
    funded = CostModel(funding_per_settlement=0.0001, funding_interval_minutes=480.0)
    assert funded.round_trip(1, 2.0, 960.0).financing == pytest.approx(0.0002)  # longs pay two settlements
    assert funded.round_trip(-1, 2.0, 960.0).financing == pytest.approx(-0.0002)  # shorts receive them
    vol = CostModel(slippage_rate=0.0001, slippage_vol_k=0.5)
    assert vol.round_trip(1, 1.0, 1.0, sigma_1m=0.001).slippage == pytest.approx(2 * 0.0005)
    assert vol.round_trip(1, 1.0, 1.0, sigma_1m=0.0).slippage == pytest.approx(2 * 0.0001)


def test_the_venue_charges_the_rates_the_rule_prices():
    from lbml.data.frames import MarketData
    from lbml.engine.venue_modules import venue_modules
    from lbml.split import Split

    scenario = load_scenario("scenarios/default.toml")
    cm = cost_model_for(scenario)
    c = scenario.costs
    assert (cm.taker_fee, cm.maker_fee, cm.slippage_rate) == (c.taker_fee, c.maker_fee, c.slippage_bps / 1e4)
    assert (cm.long_borrow_apr, cm.short_borrow_apr) == (c.borrow_apr_quote, c.borrow_apr_base)
    t = pd.Timestamp("2024-01-01", tz="UTC")
    mods = venue_modules(scenario, MarketData(instruments={}, funding={}, bar_minutes=1), Split(t, t, t, t))
    assert mods.slippage._rate == pytest.approx(cm.slippage_rate)
    assert mods.borrow._quote_apr == cm.long_borrow_apr and mods.borrow._base_apr == cm.short_borrow_apr


def _loop_brackets(bars: pd.DataFrame, sl: float, tp: float, max_bars: int, side: int):
    """A plain per-bar loop of the same exit rules (stop first within a bar, gap-through at the open)."""
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    n = len(c)
    ret, held = np.full(n, np.nan), np.full(n, np.nan)
    for t in range(n - max_bars):
        entry = c[t]
        stop, take = entry * (1 - side * sl), entry * (1 + side * tp)
        exit_px, k = c[t + max_bars], max_bars
        for j in range(1, max_bars + 1):
            hit_stop = lo[t + j] <= stop if side > 0 else h[t + j] >= stop
            hit_take = h[t + j] >= take if side > 0 else lo[t + j] <= take
            if hit_stop:
                through = o[t + j] < stop if side > 0 else o[t + j] > stop
                exit_px, k = (o[t + j] if through else stop), j
                break
            if hit_take:
                exit_px, k = take, j
                break
        ret[t], held[t] = side * (exit_px / entry - 1), k
    return ret, held


def test_bracket_simulation_equals_a_plain_loop():
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 600)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.001, 600))  # gaps between bars
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, 600))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, 600))
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})
    sim = simulate_brackets(bars, 0.004, 0.006, 20)
    for side, ret, held in ((1, sim.long_return, sim.long_bars), (-1, sim.short_return, sim.short_bars)):
        want_r, want_h = _loop_brackets(bars, 0.004, 0.006, 20, side)
        np.testing.assert_allclose(ret, want_r, rtol=0, atol=1e-15, equal_nan=True)
        np.testing.assert_array_equal(held, want_h)
    fwd = np.log(np.r_[close[5:], np.full(5, np.nan)] / close)
    payoff = estimate_payoff(sim, fwd, bar_minutes=1)
    ok = np.isfinite(fwd) & np.isfinite(sim.long_return)
    up = ok & (fwd > 0)
    assert payoff.win_long == pytest.approx(sim.long_return[up].mean())
    assert payoff.loss_short == pytest.approx(-sim.short_return[up].mean())
    assert payoff.hold_minutes_long == pytest.approx(sim.long_bars[ok].mean())


def test_break_even_comes_from_the_real_payoff_not_the_bracket():
    # The demo's case: a 0.8 % bracket, but trades really end around +-0.25 %. The bracket's
    # break-even (0.5625) lets a 0.6 probability trade; the real payoff does not.
    costs = CostModel(taker_fee=0.0004, slippage_rate=0.0001)
    bracket = KellyParams(0.25, 3.0, 0.5, 10.0, Payoff.from_brackets(0.008, 0.008, 38.0), costs)
    real = KellyParams(0.25, 3.0, 0.5, 10.0, Payoff(0.0025, 0.0025, 0.0025, 0.0025, 38.0, 38.0), costs)
    assert decide(0.6, bracket).side == 1
    d = decide(0.6, real)
    assert d.side == 0 and d.break_even == pytest.approx((0.0025 + 0.001) / 0.005)
    assert decide(0.75, real).side == 1
    assert decide(0.25, real).side == -1


def test_kelly_size_is_net_of_the_cost_at_the_size_taken():
    costs = CostModel(taker_fee=0.0004, slippage_rate=0.0001, long_borrow_apr=0.5)
    params = KellyParams(0.25, 3.0, 1.0, 10.0, Payoff(0.004, 0.003, 0.004, 0.003, 600.0, 600.0), costs)
    d = decide(0.7, params, equity=10_000.0)
    c = d.cost.total
    assert c == pytest.approx(costs.round_trip(1, d.exposure, 600.0).total)
    f = 0.7 / (0.003 + c) - 0.3 / (0.004 - c)
    assert d.exposure == pytest.approx(min(0.25 * f, 3.0), rel=1e-2)  # f* priced at the cap, then re-priced
    assert d.expected_return == pytest.approx(0.7 * (0.004 - c) - 0.3 * (0.003 + c))


def test_pricing_round_trips_through_the_manifest_and_builds_the_strategy_rule():
    scenario = load_scenario("scenarios/aave_wbnb_3x.toml")
    pricing = Pricing(Payoff(0.003, 0.002, 0.003, 0.002, 40.0, 41.0), 0.0, 480.0, 0.0007)
    assert Pricing.from_dict(pricing.to_dict()) == pricing
    params = kelly_params_for(scenario, pricing, ev_margin=0.02)
    assert params.max_short_exposure <= params.cap(1) + 1e-12  # a lending market lends less to shorts
    assert params.costs == cost_model_for(scenario)
    assert math.isclose(params.ev_margin, 0.02)


def test_an_entry_is_sized_net_of_its_own_costs():
    """At exposure x the margin N/x plus the entry's fee, slippage and gas is exactly the equity."""
    cm = CostModel(taker_fee=0.0004, slippage_rate=0.0002, gas_per_tx=0.5)
    for x in (1.0, 2.9, 5.0):
        n = cm.entry_notional(x, 10_000.0)
        assert n / x + n * (0.0004 + 0.0002) + 0.5 == pytest.approx(10_000.0, rel=1e-12)
    assert cm.entry_notional(-3.0, 10_000.0) == cm.entry_notional(3.0, 10_000.0)  # a short's notional too
    vol = CostModel(taker_fee=0.0, slippage_rate=0.0001, slippage_vol_k=0.5)
    assert vol.entry_notional(2.0, 1_000.0, sigma_1m=0.002) == pytest.approx(2_000.0 / (1.0 + 2.0 * 0.001))
