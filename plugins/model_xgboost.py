"""XGBoost classifier plugin: hist trees, seeded and deterministic, native UBJSON persistence."""

import json
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb
from sklearn.utils._param_validation import Interval

from lbml.errors import ArtifactError
from lbml.hookspecs import hookimpl
from lbml.models.base import ModelPlugin

MODEL_FILE = "model.ubj"
META_FILE = "xgboost_meta.json"


class XGBoostModel(ModelPlugin):
    """Gradient-boosted trees (binary: class 1 = price up over the label horizon)."""

    name = "xgboost"
    # xgboost's own ranges (max_depth, eta, subsample, colsample_bytree, min_child_weight, lambda),
    # checked before any data loads instead of inside ``xgb.train``.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_depth": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "subsample": [Interval(Real, 0, 1, closed="right")],
        "colsample_bytree": [Interval(Real, 0, 1, closed="right")],
        "min_child_weight": [Interval(Real, 0, None, closed="left")],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
        "early_stopping_rounds": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Interval(Integral, 1, None, closed="left")],
        "inference_threads": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 5.0,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 30,
        n_jobs: int = 2,
        inference_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.n_jobs = n_jobs
        self.inference_threads = inference_threads
        self.random_state = random_state

    def _train_params(self) -> dict[str, Any]:
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "seed": self.random_state,
            "nthread": self.n_jobs,
        }

    def fit(self, X, y, *, sample_weight=None, eval_set=None) -> "XGBoostModel":
        y = np.asarray(y)
        classes = np.unique(y)
        if not set(classes.tolist()) <= {0, 1} or len(classes) < 2:
            raise ValueError(f"xgboost plugin needs binary labels 0/1 with both present, got {classes}")
        dtrain = xgb.DMatrix(X, label=y, weight=sample_weight)
        evals = []
        if eval_set is not None:
            evals = [(xgb.DMatrix(eval_set[0], label=eval_set[1]), "validation")]
        booster = xgb.train(
            self._train_params(),
            dtrain,
            num_boost_round=self.n_estimators,
            evals=evals,
            early_stopping_rounds=self.early_stopping_rounds if evals else None,
            verbose_eval=False,
        )
        self._set_booster(booster)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.best_iteration_ = int(getattr(booster, "best_iteration", self.n_estimators - 1))
        return self

    def _set_booster(self, booster: xgb.Booster) -> None:
        booster.set_param({"nthread": self.inference_threads})
        self.booster_ = booster
        best = getattr(booster, "best_iteration", None)
        self._iteration_range = (0, best + 1) if best is not None else (0, 0)

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        up = self.booster_.inplace_predict(
            np.ascontiguousarray(X, dtype=np.float64), iteration_range=self._iteration_range
        )
        return np.column_stack([1.0 - up, up])

    def predict_up_one(self, x: np.ndarray) -> float:
        row = x.reshape(1, -1)
        return float(self.booster_.inplace_predict(row, iteration_range=self._iteration_range)[0])

    def tree_booster(self) -> xgb.Booster:
        """Return the booster restricted to the trees predictions use (for compiled inference)."""
        begin, end = self._iteration_range
        return self.booster_[begin:end] if end else self.booster_

    def save(self, directory: Path) -> list[Path]:
        self._check_fitted()
        model_path = directory / MODEL_FILE
        # The bytes save_model would write, written by Python: a refused write (a full disk) is an
        # OSError naming the file, not an XGBoostError from inside the C++ library.
        model_path.write_bytes(bytes(self.booster_.save_raw(raw_format="ubj")))
        meta_path = directory / META_FILE
        meta = {"n_features_in": self.n_features_in_, "best_iteration": self.best_iteration_}
        meta_path.write_text(json.dumps(meta, indent=2))
        return [model_path, meta_path]

    @classmethod
    def load(cls, directory: Path, params: dict[str, Any]) -> "XGBoostModel":
        model = cls(**params)
        booster = xgb.Booster()
        try:
            booster.load_model(directory / MODEL_FILE)
            meta = json.loads((directory / META_FILE).read_text())
        except (xgb.core.XGBoostError, OSError, ValueError) as exc:
            raise ArtifactError(f"{directory}: cannot read XGBoost model: {exc}".splitlines()[0]) from None
        model._set_booster(booster)
        model.classes_ = np.array([0, 1])
        model.n_features_in_ = int(meta["n_features_in"])
        model.best_iteration_ = int(meta["best_iteration"])
        return model


@hookimpl
def lbml_register_models() -> list[type]:
    return [XGBoostModel]
