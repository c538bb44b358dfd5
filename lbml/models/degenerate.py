"""Refusing a degenerate model: one whose probability does not move from bar to bar.

A model whose (calibrated) output is the same number for every row carries no signal: the
strategy would see one probability for every bar. Training measures the output on held-out
predictions (the calibration block as the deployed model maps it, and the out-of-fold predictions)
and refuses to write such a model.
"""

from collections.abc import Mapping

import numpy as np

from lbml.errors import DataError

class DegenerateModelError(DataError):
    """The trained model predicts one probability for every row: it is not saved."""


#: Largest spread (max - min) of probabilities still counted as one constant value.
CONSTANT_SPREAD = 1e-9


def require_varying_output(model_name: str, predictions: Mapping[str, np.ndarray]) -> None:
    """Raise ``DegenerateModelError`` if any named set of predicted probabilities is constant.

    Non-finite entries (rows without a prediction) are ignored; a set with fewer than two finite
    predictions is not judged.
    """
    for label, p in predictions.items():
        p = np.asarray(p, dtype=np.float64)
        p = p[np.isfinite(p)]
        if len(p) >= 2 and np.ptp(p) <= CONSTANT_SPREAD:
            raise DegenerateModelError(
                f"model {model_name} is degenerate: p = {p[0]:.4f} for all {len(p)} {label} predictions "
                "(no signal); the model was not saved"
            )
