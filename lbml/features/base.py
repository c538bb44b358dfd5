"""The feature plugin contract.

A feature plugin is a small stateful object fed one event at a time, in timestamp order:

- ``on_trade`` / ``on_quote`` / ``on_reference_bar`` / ``on_funding`` / ``on_depth`` for the inputs
  it declares,
  each called for every event up to and including the bar's close time;
- ``update(bar)`` once per closed bar of the traded instrument, returning the plugin's feature
  values *at that bar's close* (NaN while warming up).

That incremental ``update`` is the only implementation of a feature. Training replays history
through it (``lbml.features.pipeline.compute_features``), the backtest engine and the live node call
it bar by bar, so the three cannot drift apart. A feature at bar t may only use events with
timestamps up to t; look-ahead checks in the test suite perturb the future and verify the past.

Plugins that learn parameters (GARCH) do it in ``fit`` on the training window only and expose them
through ``fitted_state``/``load_fitted_state`` so model artifacts can carry them. Such a plugin
(``learns_parameters()``) is also refitted inside every cross-validation fold, on that fold's
training rows only (``fit_segments``, see ``lbml.research.folds``), so out-of-fold statistics never
rest on parameters that saw the fold's test block.
"""

import math
from dataclasses import dataclass
from enum import StrEnum
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from lbml.errors import PluginError

NAN = math.nan


class FeatureInput(StrEnum):
    """Inputs a feature plugin may need; plugins whose inputs the data lacks are left out."""

    BARS = "bars"
    TAKER_BUY = "taker_buy"  # per-bar aggressive-buy volume (klines or trade ticks)
    TRADES = "trades"
    QUOTES = "quotes"
    REFERENCE = "reference"  # bars of a second instrument (e.g. BTC for BNB)
    FUNDING = "funding"
    DEPTH = "depth"  # 5-level book summary snapshots


@dataclass(frozen=True, slots=True)
class BarEvent:
    """A closed bar as features see it; ``ts`` is the close time in UNIX nanoseconds."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    taker_buy_volume: float = NAN


class FeatureParams(BaseModel):
    """Base for a plugin's parameters: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class FeatureDoc:
    """Reference documentation of one output, generated into the feature reference."""

    formula: str
    units: str


class FeaturePlugin:
    """Base class of every feature plugin."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    inputs: ClassVar[frozenset[FeatureInput]] = frozenset({FeatureInput.BARS})
    Params: ClassVar[type[FeatureParams]] = FeatureParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            reason = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
            reason = reason.removeprefix("Value error, ")
            where = f"parameter {key}" if key else "parameters"
            raise PluginError(f"feature plugin {self.name!r}: {where}: {reason}") from None
        self.reset()

    # -- contract -----------------------------------------------------------------------------
    def output_names(self) -> tuple[str, ...]:
        """Return the names of the values ``update`` returns, in order."""
        raise NotImplementedError

    def warmup_bars(self) -> int:
        """Return how many bars ``update`` needs before every output is finite."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all streaming state (fitted parameters are kept)."""
        raise NotImplementedError

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        """Consume one closed bar and return the outputs at its close."""
        raise NotImplementedError

    def docs(self) -> dict[str, FeatureDoc]:
        """Return formula and units per output name (feeds the generated feature reference)."""
        return {}

    # -- optional inputs ------------------------------------------------------------------------
    def on_trade(self, ts: int, price: float, size: float, side: int) -> None:
        """Consume one trade tick (side +1: buyer aggressor, -1: seller)."""

    def on_quote(self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        """Consume one top-of-book quote."""

    def on_reference_bar(self, bar: BarEvent) -> None:
        """Consume one closed bar of the reference instrument (delivered before the traded bar)."""

    def on_funding(self, ts: int, rate: float) -> None:
        """Consume one funding-rate settlement."""

    def on_depth(self, ts: int, bid_depth: float, ask_depth: float) -> None:
        """Consume one 5-level book summary (base-asset size on the best five levels per side)."""

    # -- fitting on the training window ---------------------------------------------------------
    def fit(self, bars: "Any") -> None:
        """Learn parameters from the training window's bars (default: nothing to learn)."""

    def fit_segments(self, segments: "Sequence[Any]") -> None:
        """Learn parameters from several separate spans of training bars.

        Cross-validation folds train on the window minus a purged test block, so their bars come
        as contiguous segments (CPCV: before and after the test groups). The default fits on the
        segments concatenated; a plugin whose parameters depend on consecutive bars (returns)
        overrides this so that nothing is computed across the gap between two segments.

        Parameters
        ----------
        segments : sequence of pandas.DataFrame
            Canonical bar frames in time order, each contiguous, none overlapping a test block.
        """
        import pandas as pd

        self.fit(segments[0] if len(segments) == 1 else pd.concat(list(segments)))

    @classmethod
    def learns_parameters(cls) -> bool:
        """Return whether the plugin learns parameters (overrides ``fit`` or ``fit_segments``).

        Only such plugins are refitted per cross-validation fold; the features of the others do
        not depend on any fit and are computed once.
        """
        return cls.fit is not FeaturePlugin.fit or cls.fit_segments is not FeaturePlugin.fit_segments

    def fitted_state(self) -> dict[str, Any]:
        """Return learned parameters as JSON-serialisable data."""
        return {}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        """Restore learned parameters saved by ``fitted_state``."""

    # -- description ------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "plugin": self.name,
            "version": self.version,
            "params": self.params.model_dump(mode="json"),
            "outputs": list(self.output_names()),
            "inputs": sorted(i.value for i in self.inputs),
            "warmup_bars": self.warmup_bars(),
        }


def as_array(values: tuple[float, ...]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)
