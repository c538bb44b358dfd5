"""The model plugin contract, following scikit-learn conventions.

``__init__`` stores hyperparameters and nothing else; ``fit`` does the work and returns ``self``;
learned state ends in ``_``; ``predict_proba`` columns follow ``classes_``. Models persist in their
library's native format (never pickle): ``save`` writes files into a folder, ``load`` reads them.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


class ModelPlugin(ClassifierMixin, BaseEstimator):
    """Base class of model plugins: a binary/multiclass classifier with native persistence."""

    name: ClassVar[str]
    #: True if ``fit`` accepts ``t0``/``t1`` keyword arrays (label start/end times, int64 ns) for
    #: purging inside the fit (e.g. a stacking ensemble's out-of-fold meta-features).
    uses_label_times: ClassVar[bool] = False
    #: scikit-learn style constraints per hyperparameter (``sklearn.utils._param_validation``):
    #: ``{"max_depth": [Interval(Integral, 0, None, closed="left")], ...}``; checked by ``validate_params``.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    @classmethod
    def validate_params(cls, params: Mapping[str, Any], *, prefix: str = "model.params", **kwargs: Any) -> None:
        """Raise ``ConfigError`` naming ``<prefix>.<key>`` unless ``params`` are valid hyperparameters.

        Called when a scenario loads, before any data: unknown names (with the closest known one)
        and values outside ``_parameter_constraints``. Override to check more, calling ``super()``.
        """
        from lbml.models.params import check_estimator, check_names

        check_names(params, cls._get_param_names(), cls.name, prefix)
        check_estimator(cls(**params), params, prefix)

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        sample_weight: np.ndarray | None = None,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> "ModelPlugin":
        """Fit on ``X``/``y``; ``eval_set`` (a purged block of the training span) may drive early stopping."""
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return class probabilities, columns ordered as ``classes_``."""
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the most probable class per row (scikit-learn convention)."""
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(X), axis=1)]

    def input_window(self) -> int:
        """Return how many consecutive bars one input row holds (1: the current bar's features).

        A sequence model returns its window: the scenario's feature pipeline then gives it rows of
        ``window × n_features`` values, oldest bar first (``lbml.features.sequence``), in training,
        backtest and paper alike.
        """
        return 1

    def predict_up_one(self, x: np.ndarray) -> float:
        """Return P(class 1) for one feature row: the per-bar streaming path.

        Plugins may override with a faster single-row path; it must agree with ``predict_proba``.
        """
        proba = self.predict_proba(x.reshape(1, -1))[0]
        return float(proba[list(self.classes_).index(1)])

    def _check_fitted(self) -> None:
        """Raise ``sklearn.exceptions.NotFittedError`` before ``fit``."""
        check_is_fitted(self, "classes_")

    def save(self, directory: Path) -> list[Path]:
        """Write the fitted model in a native, non-executable format; return the files written."""
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path, params: dict[str, Any]) -> "ModelPlugin":
        """Rebuild a fitted model from files written by ``save``."""
        raise NotImplementedError
