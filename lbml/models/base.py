"""The model plugin contract, following scikit-learn conventions.

``__init__`` stores hyperparameters and nothing else; ``fit`` does the work and returns ``self``;
learned state ends in ``_``; ``predict_proba`` columns follow ``classes_``. Models persist in their
library's native format (never pickle): ``save`` writes files into a folder, ``load`` reads them.
"""

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class ModelPlugin(ClassifierMixin, BaseEstimator):
    """Base class of model plugins: a binary/multiclass classifier with native persistence."""

    name: ClassVar[str]

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

    def predict_up_one(self, x: np.ndarray) -> float:
        """Return P(class 1) for one feature row: the per-bar streaming path.

        Plugins may override with a faster single-row path; it must agree with ``predict_proba``.
        """
        proba = self.predict_proba(x.reshape(1, -1))[0]
        return float(proba[list(self.classes_).index(1)])

    def save(self, directory: Path) -> list[Path]:
        """Write the fitted model in a native, non-executable format; return the files written."""
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path, params: dict[str, Any]) -> "ModelPlugin":
        """Rebuild a fitted model from files written by ``save``."""
        raise NotImplementedError
