import math

import pandas as pd
import pytest

from lbml.report.reconcile import realized_from_fills, reconcile
from lbml.cost_model import CostModel
from lbml.sizing import KellyParams, Payoff, break_even_probability, kelly_fraction, target_exposure

# A bracket whose trades end at +1 % or -1 %, and a round trip that costs 0.1 % (two 0.05 % fees).
PARAMS = KellyParams(
    kelly_fraction=0.25, max_leverage=3.0, max_position_fraction=0.5, min_notional=10.0,
    payoff=Payoff.from_brackets(0.01, 0.01, 60.0), costs=CostModel(taker_fee=0.0005, slippage_rate=0.0),
)


def test_kelly_fraction_closed_form():
    # f* = p/l - (1-p)/w
    assert kelly_fraction(0.6, 0.02, 0.01) == pytest.approx(0.6 / 0.01 - 0.4 / 0.02)
    assert kelly_fraction(0.5, 0.01, 0.01) == pytest.approx(0.0)
    assert kelly_fraction(0.4, 0.01, 0.01) < 0


def test_no_trade_below_cost_aware_break_even():
    be = break_even_probability(0.01, 0.01, 0.001)
    assert be == pytest.approx(0.011 / 0.020)
    assert target_exposure(be - 1e-6, PARAMS) == 0.0
    assert target_exposure(1 - be + 1e-6, PARAMS) == 0.0
    assert target_exposure(be + 0.01, PARAMS) > 0.0
    assert target_exposure(1 - be - 0.01, PARAMS) < 0.0


def test_exposure_is_fractional_kelly_and_capped():
    p = 0.57
    expected = 0.25 * kelly_fraction(p, 0.009, 0.011)
    assert target_exposure(p, PARAMS) == pytest.approx(min(expected, 1.5))
    assert target_exposure(0.99, PARAMS) == pytest.approx(3.0 * 0.5)
    assert target_exposure(0.01, PARAMS) == pytest.approx(-1.5)


def test_shrinkage_pulls_probability_to_half():
    shrunk = KellyParams(**{**PARAMS.__dict__, "probability_shrinkage": 0.0})
    assert target_exposure(0.9, shrunk) == 0.0


def fills(rows):
    return pd.DataFrame(rows, columns=["side", "quantity", "price", "commission"])


def test_realized_pnl_by_average_cost_netting():
    f = fills([("BUY", 2, 100.0, 0.1), ("BUY", 2, 110.0, 0.1), ("SELL", 3, 120.0, 0.1),
               ("SELL", 3, 90.0, 0.1), ("BUY", 2, 80.0, 0.1)])
    realized, position, avg = realized_from_fills(f)
    # avg 105 after buys; sell 3 @120 -> +45; sell 1 @90 closes last long -> -15; short 2 @90, buy 2 @80 -> +20
    assert realized == pytest.approx(45 - 15 + 20)
    assert position == 0.0 and avg == 0.0


def test_reconcile_open_position():
    f = fills([("SELL", 1.5, 200.0, 0.3)])
    rec = reconcile(1000.0, f, last_close=190.0, slippage=0.5, borrow=0.25, engine_equity=1000 + 15 - 0.3 - 0.5 - 0.25)
    assert rec.unrealized_pnl == pytest.approx(15.0)
    assert rec.error == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(rec.rebuilt_equity, 1013.95)


def test_ev_margin_raises_the_entry_threshold_symmetrically():
    be = break_even_probability(0.01, 0.01, 0.001)
    strict = KellyParams(**{**PARAMS.__dict__, "ev_margin": 0.02})
    assert target_exposure(be + 0.01, PARAMS) > 0.0
    assert target_exposure(be + 0.01, strict) == 0.0  # above break-even, below break-even + margin
    assert target_exposure(be + 0.03, strict) == pytest.approx(target_exposure(be + 0.03, PARAMS))
    assert target_exposure(1 - be - 0.01, strict) == 0.0
    assert target_exposure(1 - be - 0.03, strict) < 0.0
