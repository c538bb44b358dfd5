"""Features of parameter-learning plugins, refitted inside every cross-validation fold.

The training matrix is computed once, with every plugin fitted on the whole training window: that
is what the final (deployed) model trains on. A plugin that learns parameters (GARCH in the
volatility layer, see ``FeaturePlugin.learns_parameters``) would then leak into the out-of-fold
statistics: the parameters behind a fold's features would have seen the fold's test block. So
for each fold :class:`FoldFeatures` fits fresh copies of those plugins, and only those, on the
fold's training bars, replays just them over the window and swaps their columns into a copy of
the matrix. Parameter-free plugins' columns are reused as computed once; their values at bar t
depend only on events up to t, never on a fit.

Which bars a fold fits on: the bars spanned by the fold's *training samples* after purging and
embargo, ``[t0, t1]`` of each (the bar a feature row sits on through the bar its label resolves
at) — the very samples the fold's model is fitted and early-stopped on, so the feature
parameters learn from exactly the information the fold's model learns from, and the final model's
whole-window fit is the same rule applied to the whole window.

- Walk-forward: purging drops every training sample whose label ends at or after the test block's
  first bar, so every fitted bar lies strictly before the test block. Parameters of fold k depend
  on nothing at or after its test block (the property the tests check).
- CPCV: training samples lie before *and after* the test groups (after the embargo). The fit
  uses both, as the fold's model does: CPCV's estimate is by construction "a model trained on the
  other groups", and the feature parameters are part of that model. Fitting only on bars before the
  first test group was rejected: the splits whose test groups include the first group would have
  nothing to fit on, and the features of training rows after a test group would come from a
  different model than the one trained on them. What CPCV must never do — let the test groups (or
  the purged/embargoed bars around them) inform a fit — holds: the fitted bars come as separate
  contiguous segments and plugins compute nothing across the gap between two segments
  (``FeaturePlugin.fit_segments``).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lbml.data.frames import InstrumentData
from lbml.errors import DataError, PluginError
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.research.validation import PurgedSplit


class FoldFeatures:
    """Per-fold feature matrix for ``cross_val_predict_purged(fold_features=...)``.

    Parameters
    ----------
    pipeline : FeaturePipeline
        The scenario's pipeline (its plugins are not touched; fresh copies are fitted per fold).
    data, bars, reference_bars, funding
        The training window's inputs, exactly as they were fed to ``compute_features`` for ``X``.
    X : numpy.ndarray
        The samples' feature matrix (columns in ``pipeline.names`` order), whole-window fit.
    sample_times, label_ends : pandas.DatetimeIndex
        Each sample's bar time t0 and label end t1 (rows of ``X``).
    """

    def __init__(
        self,
        pipeline: FeaturePipeline,
        data: InstrumentData,
        bars: pd.DataFrame,
        reference_bars: pd.DataFrame | None,
        funding: pd.DataFrame | None,
        X: np.ndarray,
        sample_times: pd.DatetimeIndex,
        label_ends: pd.DatetimeIndex,
    ) -> None:
        self._learning = pipeline.learning_plugins()
        if not self._learning:
            raise ValueError("no feature plugin of this pipeline learns parameters")
        names = list(pipeline.names)
        self._like = pipeline.like
        self._columns = np.array([names.index(n) for n in pipeline.like(self._learning).names])
        self._data, self._bars, self._ref, self._funding = data, bars, reference_bars, funding
        self._X = np.asarray(X, dtype=np.float64)
        index = bars.index
        self._rows = index.get_indexer(sample_times)
        if (self._rows < 0).any():
            raise ValueError("every sample time must be a bar of the window")
        # the last bar at or before each label end (a label resolves on a bar of the window)
        self._end_rows = np.searchsorted(index.asi8, pd.DatetimeIndex(label_ends).asi8, side="right") - 1

    @property
    def plugin_names(self) -> tuple[str, ...]:
        """Names of the plugins refitted per fold."""
        return tuple(p.name for p in self._learning)

    def fit_segments(self, train: np.ndarray) -> list[tuple[int, int]]:
        """Return the contiguous bar ranges ``[start, stop)`` spanned by the training samples."""
        n = len(self._bars)
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, self._rows[train], 1)
        np.add.at(cover, self._end_rows[train] + 1, -1)
        covered = np.cumsum(cover[:n]) > 0
        edges = np.diff(np.concatenate(([0], covered.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        return [(int(a), int(b)) for a, b in zip(starts, stops)]

    def __call__(self, split: PurgedSplit) -> tuple[np.ndarray, dict[str, Any]]:
        """Fit the learning plugins on ``split``'s training bars; return the fold's matrix and state.

        Rows of the matrix outside the split's training and test samples are NaN: the fold never
        uses them.
        """
        segments = self.fit_segments(split.train)
        frames = [self._bars.iloc[a:b] for a, b in segments]
        fresh = self._like([type(p)(**p.params.model_dump()) for p in self._learning])
        try:
            for plugin in fresh.plugins:
                plugin.fit_segments(frames)
        except PluginError as exc:
            raise DataError(f"fold feature fit on {sum(len(f) for f in frames)} training bars failed: {exc}") from None
        used = np.union1d(split.train, split.test)
        last = int(self._rows[used].max())
        values = compute_features(fresh, self._data, self._bars.iloc[: last + 1], self._ref, self._funding)
        out = np.full_like(self._X, np.nan)
        out[used] = self._X[used]
        out[np.ix_(used, self._columns)] = values.to_numpy()[self._rows[used]]
        if not np.isfinite(out[used]).all():
            raise DataError(f"features refitted on a fold's training bars are not finite ({', '.join(self.plugin_names)})")
        index = self._bars.index
        test_rows = self._rows[split.test]
        breaks = np.flatnonzero(np.diff(split.test) != 1)
        test_runs = zip(np.concatenate(([0], breaks + 1)), np.concatenate((breaks, [len(test_rows) - 1])))
        state = {
            "test_bars": [[index[test_rows[a]].isoformat(), index[test_rows[b]].isoformat()] for a, b in test_runs],
            "fit_bars": [[index[a].isoformat(), index[b - 1].isoformat()] for a, b in segments],
            "n_fit_bars": int(sum(b - a for a, b in segments)),
            "fitted_state": fresh.fitted_state(),
        }
        return out, state


def fold_features_for(
    pipeline: FeaturePipeline,
    data: InstrumentData,
    bars: pd.DataFrame,
    reference_bars: pd.DataFrame | None,
    funding: pd.DataFrame | None,
    X: np.ndarray,
    sample_times: Sequence[Any],
    label_ends: Sequence[Any],
) -> FoldFeatures | None:
    """Return a :class:`FoldFeatures` when some plugin learns parameters, else None (nothing to refit)."""
    if not pipeline.learning_plugins():
        return None
    return FoldFeatures(
        pipeline, data, bars, reference_bars, funding, X,
        pd.DatetimeIndex(sample_times), pd.DatetimeIndex(label_ends),
    )
