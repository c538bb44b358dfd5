"""Probability calibration on a purged block after the training span, stored as plain JSON.

scikit-learn fits the calibrator (``CalibratedClassifierCV`` around a ``FrozenEstimator``, so the
model is not refitted): sigmoid (Platt) below ``ISOTONIC_MIN_SAMPLES`` calibration samples,
isotonic above. The learned map is then read out into a ``Calibrator`` (sigmoid: a, b; isotonic:
the step thresholds) that is saved as JSON and applied without scikit-learn objects, so the
artifact stays pickle-free. A test checks the JSON map reproduces scikit-learn's output.
"""

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss, log_loss

from lbml.errors import ArtifactError
from lbml.models.base import ModelPlugin

ISOTONIC_MIN_SAMPLES = 1000
CALIBRATION_FILE = "calibration.json"


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE: sample-weighted mean |observed frequency − mean prediction| over equal-width bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / max(len(y), 1))


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from raw P(class 1) to calibrated P(class 1)."""

    method: str  # "sigmoid" | "isotonic"
    params: dict[str, Any]
    n_samples: int

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(self.params["a"] * p + self.params["b"]))
        return np.interp(p, *self._steps)

    def apply_one(self, p: float) -> float:
        """``apply`` on one probability (the per-bar path): the same ufuncs on a 0-d array, so the
        same value to the bit."""
        return float(self.apply(p))

    @cached_property
    def _steps(self) -> tuple[np.ndarray, np.ndarray]:
        # The isotonic thresholds as float64 arrays, converted once (np.interp converted the lists on every call).
        return np.asarray(self.params["x"], dtype=np.float64), np.asarray(self.params["y"], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "n_samples": self.n_samples}

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CALIBRATION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, directory: Path) -> "Calibrator":
        path = Path(directory) / CALIBRATION_FILE
        try:
            raw = json.loads(path.read_text())
            method = raw["method"]
            params = raw["params"]
            if method == "sigmoid":
                params = {"a": float(params["a"]), "b": float(params["b"])}
            elif method == "isotonic":
                params = {"x": [float(v) for v in params["x"]], "y": [float(v) for v in params["y"]]}
            else:
                raise ValueError(f"unknown method {method!r}")
            return cls(method, params, int(raw["n_samples"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: corrupt calibration ({exc})") from None


def calibration_method(n_samples: int) -> str:
    return "isotonic" if n_samples >= ISOTONIC_MIN_SAMPLES else "sigmoid"


def fit_calibrator(model: ModelPlugin, X: np.ndarray, y: np.ndarray, method: str | None = None) -> Calibrator:
    """Fit a calibration map for an already fitted ``model`` on a held-out block ``X``/``y``."""
    method = method or calibration_method(len(y))
    cal = CalibratedClassifierCV(FrozenEstimator(model), method=method)
    cal.fit(X, y)
    fitted = cal.calibrated_classifiers_[0].calibrators[0]
    if method == "sigmoid":
        params = {"a": float(fitted.a_), "b": float(fitted.b_)}
        if params["a"] >= 0.0:
            # A non-increasing map says the model ranks no better than chance on this block:
            # predict the block's base rate instead of inverting the model.
            rate = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
            params = {"a": 0.0, "b": float(np.log((1.0 - rate) / rate))}
    else:
        params = {"x": fitted.X_thresholds_.tolist(), "y": fitted.y_thresholds_.tolist()}
    return Calibrator(method, params, int(len(y)))


def probability_scores(y: np.ndarray, p: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Brier score, log loss and expected calibration error of P(class 1)."""
    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        f"{prefix}brier": float(brier_score_loss(y, p)),
        f"{prefix}logloss": float(log_loss(y, p, labels=[0, 1])),
        f"{prefix}ece": expected_calibration_error(y, p),
    }


def reliability_diagram(
    y: np.ndarray, curves: dict[str, np.ndarray], path: Path, title: str, n_bins: int = 10
) -> Path:
    """Write a reliability diagram (observed frequency vs mean prediction per bin) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    for label, p in curves.items():
        frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
        ax.plot(mean, frac, "o-", ms=3, label=label)
        hist.hist(p, bins=40, range=(0, 1), alpha=0.5, label=label)
    ax.set_xlabel("mean predicted P(up)")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    hist.set_xlabel("predicted P(up)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class CalibratedModel(ModelPlugin):
    """A fitted model followed by a calibration map; what ``load_artifact`` returns when the
    manifest lists a calibration. Not a registered plugin: it is rebuilt from the manifest."""

    name = "calibrated"

    def __init__(self, base: ModelPlugin, calibrator: Calibrator) -> None:
        self.base = base
        self.calibrator = calibrator
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = getattr(base, "n_features_in_", None)

    def with_base(self, base: ModelPlugin) -> "CalibratedModel":
        """The same calibration on another implementation of the same base model (e.g. compiled)."""
        return CalibratedModel(base, self.calibrator)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw = self.base.predict_proba(X)[:, list(self.base.classes_).index(1)]
        up = self.calibrator.apply(raw)
        return np.column_stack([1.0 - up, up])

    def predict_up_one(self, x: np.ndarray) -> float:
        return self.calibrator.apply_one(self.base.predict_up_one(x))
