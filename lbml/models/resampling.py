"""Class-imbalance resampling (SMOTE, random undersampling) inside a model's fit, and only there.

``[model.resampling]`` in a scenario wraps the model plugin in :class:`ResampledModel` while it
trains. The wrapper resamples the rows its ``fit`` receives — in cross-validation, exactly the
purged training samples of one fold; for the final model, its purged fit block — and passes
everything else through untouched: the ``eval_set`` (the early-stopping block), the rows given to
``predict_proba`` (out-of-fold test blocks, the calibration block) and the artifact (the fitted
inner model is what is saved; resampling is a training-time procedure, not part of the model).
Synthetic SMOTE rows therefore never reach validation, calibration or out-of-fold evaluation:
``tests/test_resampling.py`` checks every row those steps see against the real samples.

- ``smote``: ``imblearn.over_sampling.SMOTE`` raises the minority class to ``sampling_strategy``
  × the majority count with rows interpolated between a minority sample and one of its
  ``k_neighbors`` nearest minority neighbours (in the model's input space: for a sequence model,
  whole windows). Synthetic rows get the minority class's mean sample weight.
- ``undersample``: ``imblearn.under_sampling.RandomUnderSampler`` drops majority rows down to
  majority = minority / ``sampling_strategy``; the kept rows stay in time order with their weights
  (and label times, for models that purge on them).
- A fold already at least as balanced as asked is left as it is (said in the report).

The training report (``metrics.json`` ``resampling``) gives the class balance before and after
in every fold and the final fit, and the out-of-fold log loss with and without resampling (same
splits, same model parameters): resampling shifts a model's base rate, which calibration must then
undo, so it can cost log loss even when it helps ranking.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lbml.errors import ConfigError
from lbml.models.base import ModelPlugin


@dataclass(frozen=True)
class ResampleReport:
    """What one resampling did: rows and share of class 1 before and after, synthetic rows added."""

    n_before: int
    n_after: int
    up_share_before: float
    up_share_after: float
    n_synthetic: int
    n_dropped: int

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def resample(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, config: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, ResampleReport]:
    """Resample ``(X, y, sample_weight)`` by ``config`` (a scenario's ``model.resampling``).

    Returns the new rows, labels and weights, the positions of the kept original rows (None for
    SMOTE, whose output is every original row in order followed by the synthetic ones), and a report.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    counts = np.bincount(y.astype(np.int64), minlength=2)
    minority, majority = int(counts.min()), int(counts.max())
    before = float(y.mean()) if len(y) else float("nan")
    unchanged = (X, y, sample_weight, np.arange(len(y)), ResampleReport(len(y), len(y), before, before, 0, 0))
    if config.method == "none" or minority == 0 or minority >= config.sampling_strategy * majority:
        return unchanged
    if config.method == "smote":
        from imblearn.over_sampling import SMOTE

        if minority <= config.k_neighbors:
            return unchanged  # too few minority rows to interpolate between; left as is
        sampler = SMOTE(sampling_strategy=config.sampling_strategy, k_neighbors=config.k_neighbors,
                        random_state=config.random_state)
        X_r, y_r = sampler.fit_resample(X, y)
        n_new = len(y_r) - len(y)
        if not np.array_equal(X_r[: len(y)], X):  # imbalanced-learn keeps the originals first, in order
            raise RuntimeError("SMOTE reordered the original samples")
        w_r = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            minority_class = int(np.argmin(counts))
            w_r = np.concatenate([w, np.full(n_new, w[y == minority_class].mean())])
        report = ResampleReport(len(y), len(y_r), before, float(y_r.mean()), n_new, 0)
        return X_r, y_r, w_r, None, report
    from imblearn.under_sampling import RandomUnderSampler

    sampler = RandomUnderSampler(sampling_strategy=config.sampling_strategy, random_state=config.random_state)
    sampler.fit_resample(X, y)
    keep = np.sort(sampler.sample_indices_)  # time order, as the caller gave the rows
    w_r = None if sample_weight is None else np.asarray(sample_weight)[keep]
    report = ResampleReport(len(y), len(keep), before, float(y[keep].mean()), 0, len(y) - len(keep))
    return X[keep], y[keep], w_r, keep, report


class ResampledModel(ModelPlugin):
    """A model plugin whose ``fit`` sees resampled training rows; everything else is the model's.

    Built by :func:`with_resampling` during training, never from a scenario's ``model.plugin``;
    ``base`` is the fitted model that is saved. ``reports`` collects one :class:`ResampleReport`
    per ``fit``.
    """

    name = "resampled"

    def __init__(self, base: ModelPlugin, config: Any, reports: list[ResampleReport] | None = None) -> None:
        self.base = base
        self.config = config
        self.reports = reports if reports is not None else []
        self.uses_label_times = base.uses_label_times

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return self.base.get_params(deep=deep)

    def input_window(self) -> int:
        return self.base.input_window()

    def fit(self, X, y, *, sample_weight=None, eval_set=None, **label_times) -> "ResampledModel":
        X_r, y_r, w_r, kept, report = resample(X, y, sample_weight, self.config)
        if label_times:
            if kept is None:
                raise ConfigError(
                    f"model.resampling.method: smote cannot be combined with {self.base.name}, which purges on "
                    "label times (synthetic rows have none); use undersample"
                )
            label_times = {k: np.asarray(v)[kept] for k, v in label_times.items()}
        self.base.fit(X_r, y_r, sample_weight=w_r, eval_set=eval_set, **label_times)
        self.reports.append(report)
        self.classes_ = self.base.classes_
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.base.predict_proba(X)

    def predict_up_one(self, x: np.ndarray) -> float:
        return self.base.predict_up_one(x)

    def save(self, directory: Path) -> list[Path]:
        return self.base.save(directory)


def with_resampling(model: ModelPlugin, config: Any, reports: list[ResampleReport]) -> ModelPlugin:
    """Return ``model`` wrapped to resample its training rows, or ``model`` itself when ``method = "none"``."""
    return model if config.method == "none" else ResampledModel(model, config, reports)


def balance_summary(reports: list[ResampleReport]) -> dict[str, Any]:
    """Aggregate fit reports: totals and the class-1 share before/after, per fit and overall."""
    if not reports:
        return {}
    return {
        "n_fits": len(reports),
        "up_share_before": [r.up_share_before for r in reports],
        "up_share_after": [r.up_share_after for r in reports],
        "n_synthetic": int(sum(r.n_synthetic for r in reports)),
        "n_dropped": int(sum(r.n_dropped for r in reports)),
    }


def resampling_effect(
    config: Any, fold_reports: list[ResampleReport], y: np.ndarray, labelled: np.ndarray, resampled: Any, plain: Any
) -> dict[str, Any]:
    """The ``resampling`` block of the training metrics.

    ``resampled`` and ``plain`` are the out-of-fold predictions (``lbml.research.validation.OutOfFold``) of
    the same splits with and without resampling (None without purged CV). Log loss is computed on
    the labelled out-of-fold bars, on the calibrated predictions (what the strategy sees) and on
    the fold models' raw output (where the shifted base rate shows).
    """
    from lbml.models.calibration import probability_scores

    out: dict[str, Any] = {"method": config.method, "sampling_strategy": config.sampling_strategy}
    if config.method == "smote":
        out["k_neighbors"] = config.k_neighbors
    out["folds"] = balance_summary(fold_reports)
    if resampled is None or plain is None:
        out["oos_effect"] = "unavailable: no purged cross-validation in this window"
        return out
    for tag, oof in (("with", resampled), ("without", plain)):
        for kind, p in (("", oof.mean), ("_raw", oof.raw_mean)):
            ok = np.isfinite(p) & np.asarray(labelled, dtype=bool)
            out[f"oos_logloss{kind}_{tag}_resampling"] = probability_scores(y[ok], p[ok])["logloss"]
    for kind in ("", "_raw"):
        out[f"oos_logloss{kind}_change"] = (
            out[f"oos_logloss{kind}_with_resampling"] - out[f"oos_logloss{kind}_without_resampling"]
        )
    return out
