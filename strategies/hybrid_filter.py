"""HybridFilter: technical filters choose the side, the model's probability confirms and sizes it.

On every closed bar the enabled entry filters (``strategies.entry_filters``: trend, RSI band,
volatility regime, volume) must all allow one side. Then:

- **model healthy** (a prediction for this very bar, not frozen): the calibrated probability goes
  through the same EV rule and fractional Kelly as ``KellyLeverage`` (``lbml.sizing.decide``, the
  scenario's cost model): the position opens only when that rule picks the filters' side, with its
  Kelly size; otherwise the model vetoes the entry.
- **model missing, late or degraded** — no prediction yet (warm-up, a guarded model withholding
  it), the last one is for an earlier bar, or it has not changed for ``frozen_after`` predictions —
  the filter-only rule trades the filters' side at ``fallback_exposure`` × equity (capped as every
  entry is). Each such entry is logged with its reason and counted in ``report()``, which lands in
  ``metrics.json`` (``strategy_report``) of a backtest or paper session.

Exits, brackets, leverage caps, the liquidation guard and the cost model are ``KellyLeverage``'s
(this class extends it): stop-loss / take-profit, ``max_holding_bars``, and an opposite signal
(from the model when it is healthy, from the filters when it is not).
"""

from collections import Counter

from lbml.nautilus.model import Bar

from lbml.engine.exit_reasons import MAX_HOLDING_TIME, OPPOSITE_SIGNAL
from lbml.engine.messages import Prediction
from lbml.sizing import decide
from strategies.entry_filters import FILTERS, EntryFilters
from strategies.kelly_leverage import KellyLeverage, KellyLeverageConfig

HEALTHY, MISSING, LATE, DEGRADED = "healthy", "missing", "late", "degraded"


class HybridFilterConfig(KellyLeverageConfig, frozen=True):
    filters: tuple[str, ...] = ("trend", "rsi", "volatility", "volume")
    trend_fast: int = 20
    trend_slow: int = 60
    rsi_period: int = 14
    rsi_long: tuple[float, float] = (50.0, 70.0)
    rsi_short: tuple[float, float] = (30.0, 50.0)
    vol_fast: int = 30
    vol_slow: int = 240
    vol_ratio: tuple[float, float] = (0.5, 2.0)
    volume_window: int = 60
    volume_ratio: float = 1.0
    fallback_exposure: float = 0.5  # filter-only entries: this multiple of equity (then capped)
    frozen_after: int = 30  # this many identical consecutive probabilities: the model is degraded

    def __post_init__(self) -> None:
        problems = []
        if not set(self.filters) <= set(FILTERS) or not {"trend", "rsi"} & set(self.filters):
            problems.append(f"filters must be among {', '.join(FILTERS)} and include trend or rsi")
        if not 1 <= self.trend_fast < self.trend_slow:
            problems.append("trend_fast must be >= 1 and below trend_slow")
        if not 2 <= self.vol_fast < self.vol_slow:
            problems.append("vol_fast must be >= 2 and below vol_slow")
        for name in ("rsi_long", "rsi_short", "vol_ratio"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                problems.append(f"{name} must be a (low, high) pair with 0 <= low <= high")
        if self.rsi_period < 1 or self.volume_window < 1 or self.frozen_after < 2:
            problems.append("rsi_period and volume_window must be >= 1, frozen_after >= 2")
        if not 0 < self.fallback_exposure <= self.max_leverage or self.volume_ratio < 0:
            problems.append("fallback_exposure must be in (0, max_leverage], volume_ratio >= 0")
        if problems:
            raise ValueError(f"strategy.params: {'; '.join(problems)}")


class HybridFilter(KellyLeverage):
    """Filters pick the side; a healthy model confirms and Kelly-sizes it, else the filter-only rule."""

    def __init__(self, config: HybridFilterConfig) -> None:
        super().__init__(config)
        self._filters = EntryFilters(config)
        self._last: Prediction | None = None
        self._repeats = 0
        self._state = MISSING
        self.counts: Counter[str] = Counter()

    # -- model health ---------------------------------------------------------------------------
    def on_data(self, data) -> None:
        if not isinstance(data, Prediction) or data.instrument_id != self.config.instrument_id:
            return
        same = self._last is not None and data.probability == self._last.probability
        self._repeats = self._repeats + 1 if same else 1
        self._last = data

    def model_state(self, bar: Bar) -> str:
        """Healthy, missing, late or degraded, for a decision at ``bar``'s close."""
        if self._last is None:
            return MISSING
        if self._last.ts_event < bar.ts_event:
            return LATE
        if not 0.0 <= self._last.probability <= 1.0 or self._repeats >= self.config.frozen_after:
            return DEGRADED
        return HEALTHY

    # -- decisions ------------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        super(KellyLeverage, self).on_bar(bar)  # the shared base: volume, guard, stale orders
        self._filters.update(bar.close.as_double(), bar.volume.as_double())
        state = self.model_state(bar)
        if state != self._state:
            log = self.log.info if state == HEALTHY else self.log.warning
            log(f"model {state} at {bar.ts_event}: " + ("model-sized entries" if state == HEALTHY else "filter-only rule"))
            self._state = state
        self.counts[f"bars_model_{state}"] += 1
        if self._busy:
            return
        if self._held_too_long(bar):
            self.close_position(MAX_HOLDING_TIME)
            return
        side = self._filters.side()
        decision = decide(self._last.probability, self._params, equity=self._equity(),
                          sigma_1m=self.config.sigma_1m) if state == HEALTHY else None
        wanted = (1 if decision.exposure > 0 else -1 if decision.exposure < 0 else 0) if decision is not None else side
        flat = self._is_flat()
        if not flat:
            held = 1 if self.portfolio.is_net_long(self.config.instrument_id) else -1
            if wanted == -held:
                self.close_position(OPPOSITE_SIGNAL)
            return
        if side == 0 or not self._may_enter():
            return
        self.counts["filters_agree"] += 1
        if decision is not None:
            if wanted != side:
                self.counts["model_vetoes"] += 1
                return
            if self._enter(decision.exposure, bar.close.as_double()):
                self.counts["entries_model"] += 1
                self.decisions.append((bar.ts_event, decision))
            return
        exposure = side * min(self.config.fallback_exposure, self._params.cap(side))
        if self._enter(exposure, bar.close.as_double()):
            self.counts["entries_fallback"] += 1
            self.counts[f"entries_fallback_{state}"] += 1
            self.log.warning(f"filter-only entry ({'long' if side > 0 else 'short'}, model {state}) at {bar.ts_event}")

    def report(self) -> dict[str, int]:
        """Counters for ``metrics.json``: bars per model state, filter agreements, entries by rule, vetoes."""
        return dict(sorted(self.counts.items()))
