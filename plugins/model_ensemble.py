"""Ensemble model plugin: weighted vote, majority vote, or stacking on purged out-of-fold predictions.

Members are other model plugins named in ``members`` (``[{"plugin": "logistic", "params": {...}},
...]``), looked up in a fresh plugin registry (built-ins and installed entry points).

- ``weighted``: P(up) = Σ w_m·p_m / Σ w_m.
- ``majority``: P(up) = weighted share of members with p_m > 0.5 (a vote count, not a calibrated
  probability: calibrate it downstream).
- ``stacking``: a logistic meta-learner on the members' logit(p). Its training inputs are purged
  walk-forward out-of-fold member predictions inside the training data (label times ``t0``/``t1``
  when the caller passes them, else spans of ``purge_rows`` rows), never in-sample fits.

Members are saved into ``member_<i>/`` subfolders in their own native formats; the meta-learner's
coefficients are plain JSON.

Sequence members (``input_window`` > 1, e.g. ``lstm``): the ensemble's window is its members'
largest, and each member receives the last ``its window`` bars of every row (a one-bar member
the current bar's features only), so it sees the very rows it would see on its own.
"""

import json
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval

from lbml.errors import ArtifactError, ConfigError, LbmlError
from lbml.hookspecs import hookimpl
from lbml.models.base import ModelPlugin

META_FILE = "ensemble_meta.json"
_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class EnsembleModel(ModelPlugin):
    """Combine several model plugins by weighted vote, majority vote or stacking."""

    name = "ensemble"
    uses_label_times = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "meta_C": [Interval(Real, 0, None, closed="neither")],
        "stacking_folds": [Interval(Integral, 2, None, closed="left")],
        "purge_rows": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        members: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (
            {"plugin": "logistic", "params": {}},
            {"plugin": "random_forest", "params": {"n_estimators": 100}},
        ),
        method: str = "weighted",
        weights: tuple[float, ...] | list[float] | None = None,
        meta_C: float = 1.0,
        stacking_folds: int = 4,
        purge_rows: int = 60,
    ) -> None:
        self.members = members
        self.method = method
        self.weights = weights
        self.meta_C = meta_C
        self.stacking_folds = stacking_folds
        self.purge_rows = purge_rows

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def validate_params(cls, params, *, prefix: str = "model.params", **kwargs) -> None:
        """Check the ensemble's own parameters, then each member's with its plugin's ``validate_params``."""
        from lbml.plugins import load_registry

        super().validate_params(params, prefix=prefix, **kwargs)
        model = cls(**params)
        model._validate(prefix)
        registry = load_registry()
        for i, spec in enumerate(model.members):
            where = f"{prefix}.members[{i}]"
            if not isinstance(spec, dict) or "plugin" not in spec or set(spec) - {"plugin", "params"}:
                raise ConfigError(f"{where}: expected {{plugin = \"...\", params = {{...}}}}, got {spec!r}")
            try:
                member_cls = _member_class(registry, spec)
            except LbmlError as exc:
                raise ConfigError(f"{where}.plugin: {exc}") from None
            member_cls.validate_params(spec.get("params", {}), prefix=f"{where}.params")

    def _validate(self, prefix: str = "model.params") -> np.ndarray:
        if self.method not in ("weighted", "majority", "stacking"):
            raise ConfigError(f"{prefix}.method: expected weighted, majority or stacking, got {self.method!r}")
        if not self.members:
            raise ConfigError(f"{prefix}.members: the ensemble needs at least one member")
        try:
            weights = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        except (TypeError, ValueError):
            weights = np.array([-1.0])
        if weights.ndim != 1 or len(weights) != len(self.members) or (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError(f"{prefix}.weights: one non-negative weight per member, not all zero")
        return weights

    def _member_classes(self) -> list[type]:
        from lbml.plugins import load_registry

        registry = load_registry()
        try:
            return [_member_class(registry, spec) for spec in self.members]
        except ConfigError as exc:
            raise ConfigError(f"model.params.members: {exc}") from None

    def _new_members(self) -> list[ModelPlugin]:
        return [cls(**spec.get("params", {})) for cls, spec in zip(self._member_classes(), self.members)]

    def input_window(self) -> int:
        return max(member.input_window() for member in self._new_members())

    def _inputs(self, X: np.ndarray, members: list[ModelPlugin]) -> list[np.ndarray]:
        """Each member's columns of ``X``: the last ``member.input_window()`` bars of every row."""
        window = max(m.input_window() for m in members)
        if X.shape[1] % window:
            raise ValueError(f"ensemble: rows of {X.shape[1]} values are not {window} bars of features")
        width = X.shape[1] // window
        return [X if m.input_window() == window else X[:, (window - m.input_window()) * width :] for m in members]

    # -- fit / predict --------------------------------------------------------------------------
    def fit(self, X, y, *, sample_weight=None, eval_set=None, t0=None, t1=None) -> "EnsembleModel":
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        weights = self._validate()
        members = self._new_members()
        inputs = self._inputs(X, members)
        evals = self._inputs(np.asarray(eval_set[0], dtype=np.float64), members) if eval_set is not None else None
        for k, member in enumerate(members):
            member_eval = (evals[k], eval_set[1]) if eval_set is not None else None
            member.fit(inputs[k], y, sample_weight=sample_weight, eval_set=member_eval)
        self.members_ = members
        self.weights_ = weights / weights.sum()
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.meta_ = None
        if self.method == "stacking":
            self.meta_ = self._fit_meta(X, y, sample_weight, t0, t1)
        return self

    def _fit_meta(self, X, y, sample_weight, t0, t1) -> dict[str, Any]:
        from lbml.research.validation import cross_val_predict_purged, purged_walk_forward

        n = len(y)
        if t0 is None or t1 is None:
            t0 = pd.to_datetime(np.arange(n), unit="ns")
            t1 = pd.to_datetime(np.arange(n) + self.purge_rows, unit="ns")
        splits = purged_walk_forward(t0, t1, n_splits=self.stacking_folds)
        columns = []
        inputs = self._inputs(X, self._new_members())
        for cls, spec, X_m in zip(self._member_classes(), self.members, inputs):
            oof = cross_val_predict_purged(
                lambda cls=cls, spec=spec: cls(**spec.get("params", {})), X_m, y, t0, t1, splits,
                sample_weight=sample_weight,
            )
            columns.append(oof.paths[:, 0])
        Z = np.column_stack(columns)
        ok = ~np.isnan(Z).any(axis=1)
        if len(np.unique(y[ok])) < 2:
            raise ValueError("stacking: out-of-fold predictions cover only one class")
        meta = LogisticRegression(C=self.meta_C)
        meta.fit(_logit(Z[ok]), y[ok], sample_weight=None if sample_weight is None else sample_weight[ok])
        return {"coef": meta.coef_[0].tolist(), "intercept": float(meta.intercept_[0]), "n_oof": int(ok.sum())}

    def _member_up(self, X: np.ndarray) -> np.ndarray:
        inputs = self._inputs(X, self.members_)
        return np.column_stack(
            [m.predict_proba(X_m)[:, list(m.classes_).index(1)] for m, X_m in zip(self.members_, inputs)]
        )

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        P = self._member_up(np.asarray(X, dtype=np.float64))
        if self.method == "weighted":
            up = P @ self.weights_
        elif self.method == "majority":
            up = (P > 0.5).astype(np.float64) @ self.weights_
        else:
            z = _logit(P) @ np.asarray(self.meta_["coef"]) + self.meta_["intercept"]
            up = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - up, up])

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: Path) -> list[Path]:
        self._check_fitted()
        directory = Path(directory)
        files: list[Path] = []
        for i, member in enumerate(self.members_):
            sub = directory / f"member_{i}"
            sub.mkdir()
            files += member.save(sub)
        meta = {"n_features_in": self.n_features_in_, "weights": self.weights_.tolist(), "meta": self.meta_}
        path = directory / META_FILE
        path.write_text(json.dumps(meta, indent=2))
        return files + [path]

    @classmethod
    def load(cls, directory: Path, params: dict[str, Any]) -> "EnsembleModel":
        model = cls(**params)
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
            weights = np.asarray(meta["weights"], dtype=np.float64)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"{directory / META_FILE}: corrupt ensemble metadata ({exc})") from None
        model.members_ = [
            member_cls.load(directory / f"member_{i}", spec.get("params", {}))
            for i, (member_cls, spec) in enumerate(zip(model._member_classes(), model.members))
        ]
        model.weights_ = weights
        model.meta_ = meta["meta"]
        model.classes_ = np.array([0, 1])
        model.n_features_in_ = int(meta["n_features_in"])
        return model


def _member_class(registry, spec: dict[str, Any]) -> type:
    if spec.get("plugin") == EnsembleModel.name:
        raise ConfigError("an ensemble cannot contain an ensemble")
    return registry.model(spec["plugin"])


@hookimpl
def lbml_register_models() -> list[type]:
    return [EnsembleModel]
