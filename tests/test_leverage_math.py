"""Leverage math: liquidation prices against the health-factor / margin formulas, rates, interest."""

import math

import pytest

from lbml.leverage import lending, margin
from lbml.leverage.model import AaveLendingModel, ExchangeMarginModel, PositionState
from lbml.leverage.rates import NS_PER_YEAR, BorrowRate, UtilisationCurve, accrued_interest

WBNB = lending.LendingParams()


@pytest.mark.parametrize("leverage", [1.5, 2.0, 3.0, 3.3])
@pytest.mark.parametrize("balance_shift", [0.0, -125.0, 40.0])
def test_long_liquidation_price_is_where_health_factor_is_one(leverage, balance_shift):
    equity, price = 10_000.0, 612.37
    qty = leverage * equity / price
    state = lending.LendingState(long=True, quantity=qty, avg_price=price, balance=equity + balance_shift)
    p_liq = lending.liquidation_price(state, WBNB)
    # HF = C·P·LT / D with C = qty and D = qty·E − cash
    debt = qty * price - (equity + balance_shift)
    assert p_liq == pytest.approx(debt / (qty * WBNB.liquidation_threshold), rel=1e-12)
    assert abs(lending.health_factor(state, p_liq, WBNB) - 1.0) < 1e-9
    assert lending.health_factor(state, p_liq * 1.001, WBNB) > 1.0 > lending.health_factor(state, p_liq * 0.999, WBNB)


@pytest.mark.parametrize("leverage", [1.5, 2.0, 2.3])
def test_short_liquidation_price_is_where_health_factor_is_one(leverage):
    equity, price = 10_000.0, 48_211.5
    qty = leverage * equity / price
    state = lending.LendingState(long=False, quantity=qty, avg_price=price, balance=equity)
    p_liq = lending.liquidation_price(state, WBNB)
    assert abs(lending.health_factor(state, p_liq, WBNB) - 1.0) < 1e-9
    assert p_liq > price


def test_research_note_figures_for_wbnb():
    # HF = LT·L/(L−1): 1.50 at 2x, 1.125 at 3x; liquidation after a 33% / 11% drop.
    for lev, hf, drop in ((2.0, 1.5, 1 / 3), (3.0, 1.125, 1 / 9)):
        state = lending.LendingState(long=True, quantity=lev * 100.0, avg_price=1.0, balance=100.0)
        assert lending.health_factor(state, 1.0, WBNB) == pytest.approx(hf, abs=1e-12)
        assert lending.price_drop_to_liquidation(lev, WBNB) == pytest.approx(drop, abs=1e-12)
        assert 1.0 - lending.liquidation_price(state, WBNB) == pytest.approx(drop, abs=1e-12)
        assert lending.leverage_from_hf(hf, WBNB) == pytest.approx(lev)
    assert WBNB.max_leverage == pytest.approx(1 / 0.3)
    assert WBNB.max_short_leverage == pytest.approx(0.7 / 0.3)
    # a short at the LTV cap is still above the liquidation threshold: HF = (1 + L)·LT / L > 1
    lev = WBNB.max_short_leverage
    state = lending.LendingState(long=False, quantity=lev * 100.0, avg_price=1.0, balance=100.0)
    assert lending.health_factor(state, 1.0, WBNB) == pytest.approx((1 + lev) * 0.75 / lev) and (1 + lev) * 0.75 / lev > 1


def test_partial_liquidation_close_factor_and_bonus():
    state = lending.LendingState(long=True, quantity=30.0, avg_price=100.0, balance=1000.0)  # 3x, D = 2000
    p_liq = lending.liquidation_price(state, WBNB)
    assert lending.liquidation_at(state, p_liq * 1.0001, WBNB) is None
    price = p_liq * 0.99
    hf = lending.health_factor(state, price, WBNB)
    assert 0.95 <= hf < 1.0
    liq = lending.liquidation_at(state, price, WBNB)
    assert liq.repaid == pytest.approx(0.5 * 2000.0)  # 50% close factor
    assert liq.quantity == pytest.approx(1000.0 * 1.1 / price)  # seized repaid·(1+bonus)
    assert liq.penalty == pytest.approx(100.0)
    # Equity falls by exactly the bonus: (C·P − D) before vs after.
    before = state.quantity * price - 2000.0
    after = (state.quantity - liq.quantity) * price - (2000.0 - liq.repaid)
    assert before - after == pytest.approx(liq.penalty)
    # Below HF 0.95 the whole debt may be repaid.
    deep = p_liq * 0.9
    assert lending.health_factor(state, deep, WBNB) < 0.95
    assert lending.liquidation_at(state, deep, WBNB).repaid == pytest.approx(2000.0)


def test_model_liquidation_quantity_matches_the_liquidation_call_at_threshold():
    model = AaveLendingModel(WBNB)
    s = PositionState(long=True, quantity=30.0, avg_price=100.0, balance=1000.0, entry_balance=1000.0)
    p_liq = model.liquidation_price(s)
    assert model.liquidation_quantity(s) == pytest.approx(0.5 * 2000.0 * 1.1 / p_liq)
    assert model.penalty(True, model.liquidation_quantity(s), p_liq) == pytest.approx(100.0)


@pytest.mark.parametrize("long", [True, False])
@pytest.mark.parametrize("lev", [1.5, 5.0, 20.0])
def test_isolated_margin_liquidation_price_meets_maintenance(long, lev):
    params = margin.MarginParams(leverage=lev, max_leverage=20.0, maintenance_margin_rate=0.005)
    q, e = 2.5, 30_000.0
    pos = margin.IsolatedPosition(long=long, quantity=q, avg_price=e, margin=margin.initial_margin(q, e, params),
                                  extra=-12.5)
    p = margin.liquidation_price(pos, params)
    # margin equity equals the maintenance margin at the liquidation price
    assert abs(pos.margin_equity(p) - 0.005 * q * p) < 1e-9 * q * e
    assert margin.margin_ratio(pos, p, params) == pytest.approx(1.0, abs=1e-9)
    if long and pos.extra == 0:
        assert p == pytest.approx(e * (1 - 1 / lev) / (1 - 0.005))


def test_exchange_model_books_later_cash_flows_against_the_margin():
    model = ExchangeMarginModel(margin.MarginParams(leverage=5.0))
    fresh = PositionState(long=True, quantity=1.0, avg_price=100.0, balance=1000.0, entry_balance=1000.0)
    paid = PositionState(long=True, quantity=1.0, avg_price=100.0, balance=990.0, entry_balance=1000.0)
    assert model.liquidation_price(fresh) == pytest.approx(100.0 * 0.8 / 0.995)
    assert model.liquidation_price(paid) == pytest.approx((100.0 - 20.0 + 10.0) / 0.995)


def test_interest_closed_form_and_rate_models():
    year = NS_PER_YEAR
    assert accrued_interest(1000.0, 0.05, 0, year) == pytest.approx(1000.0 * (math.e ** 0.05 - 1), rel=1e-12)
    # compounding in steps equals one step
    d, total = 1000.0, 0.0
    for k in range(12):
        c = accrued_interest(d, 0.07, k * year // 12, (k + 1) * year // 12)
        d += c
        total += c
    assert total == pytest.approx(accrued_interest(1000.0, 0.07, 0, year), rel=1e-12)
    curve = UtilisationCurve(base=0.0, slope1=0.05, slope2=0.75, optimal=0.9)
    assert curve.rate(0.45) == pytest.approx(0.025)
    assert curve.rate(0.95) == pytest.approx(0.05 + 0.375)
    stressed = BorrowRate(kind="utilisation", utilisation=0.45, points=((100, 0.95),), stress=2.0)
    assert stressed.at(99) == pytest.approx(0.05)
    assert stressed.at(100) == pytest.approx(0.85)
    schedule = BorrowRate(kind="schedule", apr=0.04, points=((10, 0.336), (20, 0.06)))
    assert [schedule.at(t) for t in (5, 10, 15, 25)] == pytest.approx([0.04, 0.336, 0.336, 0.06])
    assert schedule.next_change(10) == 20 and schedule.next_change(20) is None
