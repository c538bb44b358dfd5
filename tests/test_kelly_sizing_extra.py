"""Kelly sizing: uncertainty shrinkage of the probability, long/short symmetry, caps, negative edge."""

import math

import pytest

from lbml.cost_model import CostModel
from lbml.sizing import KellyParams, Payoff, shrink_probability, target_exposure


def _params(take: float = 0.02, stop: float = 0.01, cost: float = 0.002, **kw) -> KellyParams:
    """Trades ending at +take / -stop; a round trip costing ``cost`` (two taker fees of cost/2)."""
    return KellyParams(
        kelly_fraction=kw.pop("kelly_fraction", 0.25), max_leverage=3.0, max_position_fraction=0.5, min_notional=10.0,
        payoff=Payoff.from_brackets(take, stop, 60.0), costs=CostModel(taker_fee=cost / 2, slippage_rate=0.0), **kw,
    )


PARAMS = _params()


def test_shrink_by_one_standard_error():
    p, n = 0.6, 400
    se = math.sqrt(0.6 * 0.4 / n)
    assert shrink_probability(p, n) == pytest.approx(0.6 - se)
    assert shrink_probability(1 - p, n) == pytest.approx(0.4 + se)  # symmetric for shorts
    assert shrink_probability(0.52, 100) == 0.5  # edge inside one standard error: coin flip
    assert shrink_probability(0.7, 0) == 0.7
    assert shrink_probability(0.7, 100, z=2.0) < shrink_probability(0.7, 100, z=1.0) < 0.7


def test_uncertainty_reduces_exposure_and_removes_thin_edges():
    even = _params(take=0.01, cost=0.001, kelly_fraction=0.05)
    sure = target_exposure(0.6, even)
    unsure = target_exposure(0.6, KellyParams(**{**even.__dict__, "probability_n_eff": 300}))
    assert sure > 0 and 0 < unsure < sure
    assert target_exposure(0.4, KellyParams(**{**even.__dict__, "probability_n_eff": 300})) == pytest.approx(-unsure)
    few = KellyParams(**{**even.__dict__, "probability_n_eff": 20})
    assert target_exposure(0.6, few) == 0.0


def test_long_short_mirror_and_payoff_net_of_costs():
    p = 0.62
    assert target_exposure(p, PARAMS) == pytest.approx(-target_exposure(1 - p, PARAMS))
    # f* = p/l − (1−p)/w with w = tp − c and l = sl + c
    w, l = 0.02 - 0.002, 0.01 + 0.002
    assert target_exposure(0.4, PARAMS) == pytest.approx(min(0.25 * (0.4 / l - 0.6 / w), 1.5))
    costly = _params(cost=0.015)
    assert target_exposure(0.6, costly) == 0.0  # costs eat the whole take-profit: no trade
