"""scikit-learn model plugins: logistic regression, random forest, linear SVM with probabilities.

Persistence uses skops (no pickle): ``load`` accepts only the types each plugin lists in
``TRUSTED_TYPES`` beyond skops' own defaults, and refuses a file containing anything else.
Linear models standardise their inputs inside the pipeline, so the scaler learns on the fit
window only. Class imbalance: ``class_weight="balanced"`` or per-sample weights in ``fit``.
"""

from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import skops.io as sio
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from lbml.errors import ArtifactError, ConfigError
from lbml.hookspecs import hookimpl
from lbml.models.base import ModelPlugin

MODEL_FILE = "model.skops"


def _check_binary(y: np.ndarray, name: str) -> None:
    classes = np.unique(y)
    if not set(classes.tolist()) <= {0, 1} or len(classes) < 2:
        raise ValueError(f"{name} plugin needs binary labels 0/1 with both present, got {classes}")


class SklearnModelPlugin(ModelPlugin):
    """Shared fit/predict/persistence for plugins wrapping one scikit-learn estimator."""

    TRUSTED_TYPES: ClassVar[tuple[str, ...]] = ()
    _weight_param: ClassVar[str] = "sample_weight"

    def _build(self) -> ClassifierMixin:
        raise NotImplementedError

    @classmethod
    def validate_params(cls, params, *, prefix: str = "model.params", **kwargs) -> None:
        """Check the names, then the wrapped estimator's own parameter constraints (scikit-learn's)."""
        from lbml.models.params import check_estimator

        super().validate_params(params, prefix=prefix, **kwargs)
        try:
            estimator = cls(**params)._build()
        except (ValueError, TypeError) as exc:  # e.g. TimeSeriesSplit refusing n_folds
            raise ConfigError(f"{prefix}: {exc}") from None
        check_estimator(estimator, params, prefix)

    def fit(self, X, y, *, sample_weight=None, eval_set=None) -> "SklearnModelPlugin":
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        _check_binary(y, self.name)
        estimator = self._build()
        kwargs = {self._weight_param: np.asarray(sample_weight, dtype=np.float64)} if sample_weight is not None else {}
        estimator.fit(X, y, **kwargs)
        self.estimator_ = estimator
        self.classes_ = np.asarray(estimator.classes_)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(np.asarray(X, dtype=np.float64))

    def save(self, directory: Path) -> list[Path]:
        check_is_fitted(self, "estimator_")
        path = Path(directory) / MODEL_FILE
        sio.dump(self.estimator_, path)
        return [path]

    @classmethod
    def load(cls, directory: Path, params: dict[str, Any]) -> "SklearnModelPlugin":
        path = Path(directory) / MODEL_FILE
        try:
            untrusted = set(sio.get_untrusted_types(file=path))
            refused = sorted(untrusted - set(cls.TRUSTED_TYPES))
            if refused:
                raise ArtifactError(f"{path}: refusing to load untrusted types: {', '.join(refused)}")
            estimator = sio.load(path, trusted=sorted(untrusted))
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - any skops failure is a corrupt artifact
            raise ArtifactError(f"{path}: cannot read skops model: {exc}".splitlines()[0]) from None
        model = cls(**params)
        model.estimator_ = estimator
        model.classes_ = np.asarray(estimator.classes_)
        model.n_features_in_ = int(estimator.n_features_in_)
        return model


class LogisticModel(SklearnModelPlugin):
    """L2-regularised logistic regression on standardised features."""

    name = "logistic"
    _weight_param = "clf__sample_weight"

    def __init__(self, C: float = 1.0, class_weight: str | None = None, max_iter: int = 1000, random_state: int = 0) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def _build(self) -> Pipeline:
        clf = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.random_state)
        return Pipeline([("scale", StandardScaler()), ("clf", clf)])


class RandomForestModel(SklearnModelPlugin):
    """Random forest with seeded bootstrap; ``n_jobs`` threads for fit and predict."""

    name = "random_forest"
    TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)

    def __init__(
        self,
        n_estimators: int = 200,
        max_depth: int | None = 6,
        min_samples_leaf: int = 50,
        max_features: float | str = "sqrt",
        class_weight: str | None = None,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _build(self) -> RandomForestClassifier:
        return RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            class_weight=self.class_weight,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )


class LinearSVMModel(SklearnModelPlugin):
    """Linear SVM; probabilities by Platt scaling on chronological folds with a gap.

    The sigmoid maps are fitted on ``TimeSeriesSplit`` test folds separated from their training
    folds by ``gap`` samples (set it to at least the label horizon), and averaged.
    """

    name = "linear_svm"
    _weight_param = "clf__sample_weight"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_folds": [Interval(Integral, 2, None, closed="left")],
        "gap": [Interval(Integral, 0, None, closed="left")],
    }
    TRUSTED_TYPES = (
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.model_selection._split.TimeSeriesSplit",
    )

    def __init__(
        self, C: float = 0.1, class_weight: str | None = None, n_folds: int = 3, gap: int = 60, random_state: int = 0
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.n_folds = n_folds
        self.gap = gap
        self.random_state = random_state

    def _build(self) -> Pipeline:
        svm = LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)
        clf = CalibratedClassifierCV(svm, method="sigmoid", cv=TimeSeriesSplit(self.n_folds, gap=self.gap))
        return Pipeline([("scale", StandardScaler()), ("clf", clf)])


@hookimpl
def lbml_register_models() -> list[type]:
    return [LogisticModel, RandomForestModel, LinearSVMModel]
