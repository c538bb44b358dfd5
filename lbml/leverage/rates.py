"""Borrow-rate models: constant, step schedule, or Aave's utilisation curve, with a stress multiplier."""

import bisect
import math
from dataclasses import dataclass

NS_PER_YEAR = 365 * 24 * 3600 * 1_000_000_000


@dataclass(frozen=True)
class UtilisationCurve:
    """Aave's two-slope interest rate model (defaults: USDT on BNB Chain)."""

    base: float = 0.0
    slope1: float = 0.05
    slope2: float = 0.75
    optimal: float = 0.90

    def rate(self, utilisation: float) -> float:
        u = min(max(utilisation, 0.0), 1.0)
        if u <= self.optimal:
            return self.base + self.slope1 * u / self.optimal
        return self.base + self.slope1 + self.slope2 * (u - self.optimal) / (1.0 - self.optimal)


@dataclass(frozen=True)
class BorrowRate:
    """Annual borrow rate (continuously compounded) as of a time.

    ``kind`` is ``constant`` (``apr``), ``schedule`` (``points``: (ts_ns, apr), step function
    as-of, ``apr`` before the first point) or ``utilisation`` (``points``: (ts_ns, U) as-of,
    ``utilisation`` before the first point, through ``curve``). ``stress`` multiplies the result.
    """

    kind: str = "constant"
    apr: float = 0.05
    points: tuple[tuple[int, float], ...] = ()
    utilisation: float = 0.8
    curve: UtilisationCurve = UtilisationCurve()
    stress: float = 1.0

    def at(self, ts_ns: int) -> float:
        if self.kind == "constant":
            return self.apr * self.stress
        i = bisect.bisect_right([t for t, _ in self.points], ts_ns) - 1
        if self.kind == "schedule":
            value = self.points[i][1] if i >= 0 else self.apr
            return value * self.stress
        u = self.points[i][1] if i >= 0 else self.utilisation
        return self.curve.rate(u) * self.stress

    def next_change(self, ts_ns: int) -> int | None:
        """First schedule point strictly after ``ts_ns`` (where the rate may step)."""
        if self.kind == "constant":
            return None
        times = [t for t, _ in self.points]
        i = bisect.bisect_right(times, ts_ns)
        return times[i] if i < len(times) else None


def accrued_interest(debt: float, apr: float, start_ns: int, end_ns: int) -> float:
    """Interest on ``debt`` from ``start_ns`` to ``end_ns`` compounding continuously: D·(e^{r·t} − 1)."""
    years = (end_ns - start_ns) / NS_PER_YEAR
    return debt * math.expm1(apr * years)


def expected_borrow_apr(scenario) -> float:
    """The borrow APR the sizing should expect: the lending market's rate before any schedule step
    for ``aave_lending`` (curve, schedule or constant, times the stress multiplier),
    0 for a perpetual (it pays funding instead), the venue borrow rate otherwise."""
    cfg = scenario.leverage
    if cfg.model == "aave_lending":
        curve = UtilisationCurve(cfg.curve_base, cfg.curve_slope1, cfg.curve_slope2, cfg.optimal_utilisation)
        rate = BorrowRate(kind=cfg.borrow_rate, apr=cfg.borrow_apr, utilisation=cfg.utilisation, curve=curve,
                          stress=cfg.stress_multiplier)
        return rate.at(0)
    if cfg.model == "exchange_margin":
        return 0.0
    return scenario.costs.borrow_apr_quote
