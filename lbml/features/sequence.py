"""Windows of consecutive feature rows, for sequence models (e.g. the LSTM plugin).

A sequence model reads the same incremental features over its last ``window`` bars. Rather than
give such models a second input path, :class:`SequencePipeline` is the scenario's feature
pipeline with a rolling buffer: ``update(bar)`` computes the bar's features with the plugins, as
always, shifts them into the buffer and returns the whole window as one flat row, oldest bar
first (``window × n_features`` values). The batch replay (``compute_features``), the engine's
``SignalActor`` and the paper node call that same ``update``, so a training row and the row the
engine predicts on at the same bar are built by the same code and are equal.

- Warm-up: the window adds ``window - 1`` bars to the plugins' warm-up; a row is NaN until the
  buffer holds ``window`` finite rows (the engine does not predict on it, training drops it).
- No look-ahead: the row at bar t holds the features of bars t-window+1..t, each of which uses
  events up to its own close.
- The window is part of the feature schema (a ``sequence_window`` entry in its plugin list), so an
  artifact trained with one window is refused by a scenario with another.

Column names: ``<feature>`` for the current bar, ``<feature>@-k`` for the bar k bars earlier.
"""

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from lbml.features.base import BarEvent, FeaturePlugin
from lbml.features.pipeline import FeaturePipeline, FeatureSchema

SEQUENCE_VERSION = "1"


def windowed_names(names: Sequence[str], window: int) -> tuple[str, ...]:
    """Return the column names of a flat window of ``names``, oldest bar first."""
    return tuple(n if lag == 0 else f"{n}@-{lag}" for lag in range(window - 1, -1, -1) for n in names)


class SequencePipeline(FeaturePipeline):
    """A feature pipeline whose row at bar t is the features of its last ``window`` bars, flattened.

    Parameters
    ----------
    plugins : Sequence[FeaturePlugin]
        The scenario's feature plugins.
    window : int
        Bars per row (>= 1); declared by the model (``ModelPlugin.input_window``).
    """

    def __init__(self, plugins: Sequence[FeaturePlugin], window: int) -> None:
        if window < 1:
            raise ValueError(f"sequence window must be >= 1, got {window}")
        super().__init__(plugins)
        self.window = int(window)
        self.bar_names = self.names
        self.names = windowed_names(self.bar_names, self.window)
        self._width = len(self.bar_names)
        self._rows = np.full(len(self.names), np.nan)

    def _bind_buffer(self, raw: bytearray) -> None:
        # The plugins' values of one bar go into ``_raw`` (one bar's width); the window is ``_rows``.
        self._raw = raw
        self._pack = struct.Struct(f"={len(raw) // 8}d").pack_into
        self._buffer = np.frombuffer(self._raw, dtype=np.float64)

    def like(self, plugins: Sequence[FeaturePlugin]) -> "SequencePipeline":
        return SequencePipeline(plugins, self.window)

    @property
    def warmup_bars(self) -> int:
        return super().warmup_bars + self.window - 1

    def schema(self) -> FeatureSchema:
        spec = {"plugin": "sequence_window", "version": SEQUENCE_VERSION, "params": {"window": self.window}}
        return FeatureSchema(self.names, tuple(p.spec() for p in self.plugins) + (spec,))

    def reset(self) -> None:
        super().reset()
        self._rows[:] = np.nan

    def update(self, bar: BarEvent) -> np.ndarray:
        """Return the window ending at ``bar``'s close (a reused buffer: copy to keep it)."""
        current = FeaturePipeline.update(self, bar)
        rows, width = self._rows, self._width
        rows[:-width] = rows[width:]
        rows[-width:] = current
        return rows

    def groups(self) -> dict[str, np.ndarray]:
        """Return, per bar feature, the columns holding it at every lag (for grouped importance)."""
        return {n: np.arange(j, len(self.names), self._width) for j, n in enumerate(self.bar_names)}


def pipeline_for_window(plugins: Sequence[FeaturePlugin], window: int) -> FeaturePipeline:
    """Return a plain pipeline for ``window == 1``, else a :class:`SequencePipeline`."""
    return FeaturePipeline(plugins) if window == 1 else SequencePipeline(plugins, window)


def feature_groups(pipeline: FeaturePipeline) -> dict[str, Any] | None:
    """Column groups of a windowed pipeline (one per bar feature), None for a plain pipeline."""
    return pipeline.groups() if isinstance(pipeline, SequencePipeline) else None
