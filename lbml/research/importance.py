"""Feature importance, out of sample and in sample, each labelled as such.

Out of sample (any model plugin): purged out-of-fold permutation importance, the "mean decrease
accuracy" of López de Prado (AFML ch. 8) with log loss as the score. Inside each purged CV split
(``cross_val_predict_purged(fold_report=fold_permutation_importance)``), the split's own model
predicts its own test block — samples it never trained or early-stopped on, purged and embargoed —
once as is and once with each feature's column permuted across the block's rows; the importance is
the rise in log loss. Repeat r uses the r-th permutation drawn from ``numpy.random.default_rng(seed)``
for every column in turn; a test block longer than ``MAX_PERMUTATION_ROWS`` is thinned to that
many evenly spaced rows. The model's raw probabilities are scored (before the split's calibration
map, which is monotone and fitted on another block). Splits are combined by a mean weighted by the
size of their test blocks; the standard error is the weighted standard deviation across splits
over √(number of splits). A feature whose information is shared with a correlated one scores low
(the model falls back on the other): read a low score as "not needed given the rest", not as
"useless". Near-zero or negative values mean permuting the feature did not hurt out of sample.

In sample (XGBoost only): total gain and mean |SHAP| of the final model, both from the same trees,
those predictions use (up to ``best_iteration``; gain used to sum every tree grown, including the
ones early stopping discarded). SHAP is computed on the last ``MAX_SHAP_ROWS`` rows of the
training window. These show what the final model relies on, not whether that helps out of sample.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_SHAP_ROWS = 20_000
PERMUTATION_REPEATS = 3
MAX_PERMUTATION_ROWS = 10_000  # per split: evenly spaced rows of a longer test block
_CLIP = 1e-7


def _booster(model):
    base = getattr(model, "base", model)  # unwrap a CalibratedModel
    tree_booster = getattr(base, "tree_booster", None)
    return tree_booster() if tree_booster is not None and getattr(base, "booster_", None) is not None else None


def _up(model, X: np.ndarray) -> np.ndarray:
    p = np.asarray(model.predict_proba(X)[:, list(model.classes_).index(1)], dtype=np.float64)  # xgboost: float32
    return np.clip(p, _CLIP, 1.0 - _CLIP)


def fold_permutation_importance(
    model, X_test: np.ndarray, y_test: np.ndarray, *, n_repeats: int = PERMUTATION_REPEATS, seed: int = 0,
    groups: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Return the rise in ``model``'s log loss on a test block when each feature is permuted.

    Parameters
    ----------
    model : ModelPlugin
        A fitted model (in cross-validation: the split's own model).
    X_test, y_test : numpy.ndarray
        The split's out-of-fold test block (at most ``MAX_PERMUTATION_ROWS`` evenly spaced rows of it
        are used: the cost is n_features × n_repeats predictions).
    n_repeats, seed : int
        Permutations per feature; repeat r permutes every column by the r-th permutation drawn from
        ``numpy.random.default_rng(seed)``.
    groups : Mapping[str, numpy.ndarray], optional
        Columns permuted together, by name (rows of a sequence model: one feature at every lag of
        the window, ``lbml.features.sequence``); the result then has one row per group, named in
        ``names``.

    Returns
    -------
    dict
        ``n`` (rows used), ``base_logloss`` and ``increase`` (n_features × n_repeats).
    """
    from sklearn.metrics import log_loss

    rows = np.unique(np.linspace(0, len(y_test) - 1, min(len(y_test), MAX_PERMUTATION_ROWS)).astype(np.int64))
    X = np.array(np.asarray(X_test)[rows], dtype=np.float64)
    y = np.asarray(y_test)[rows]
    base = log_loss(y, _up(model, X), labels=[0, 1])
    rng = np.random.default_rng(seed)
    columns = list(groups.values()) if groups is not None else [np.array([j]) for j in range(X.shape[1])]
    increase = np.empty((len(columns), n_repeats))
    for r in range(n_repeats):
        perm = rng.permutation(len(y))
        for j, cols in enumerate(columns):
            kept = X[:, cols].copy()
            X[:, cols] = kept[perm]
            increase[j, r] = log_loss(y, _up(model, X), labels=[0, 1]) - base
            X[:, cols] = kept
    out = {"n": int(len(y)), "base_logloss": float(base), "increase": increase}
    return out | ({"names": list(groups)} if groups is not None else {})


def out_of_fold_importance(reports: Sequence[dict[str, Any]], names: Sequence[str]) -> pd.DataFrame:
    """Combine ``fold_permutation_importance`` reports of the CV splits (weighted by test size)."""
    names = reports[0].get("names", names)  # grouped columns: one row per group
    per_split = np.array([r["increase"].mean(axis=1) for r in reports])  # splits × features
    w = np.array([r["n"] for r in reports], dtype=np.float64)
    w /= w.sum()
    mean = w @ per_split
    k = len(reports)
    se = np.sqrt(w @ (per_split - mean) ** 2 * k / max(k - 1, 1)) / np.sqrt(k) if k > 1 else np.full(len(mean), np.nan)
    return pd.DataFrame(
        {"oos_permutation_logloss": mean, "oos_permutation_se": se},
        index=pd.Index(list(names), name="feature"),
    )


def in_sample_importance(model, X: pd.DataFrame) -> pd.DataFrame | None:
    """Return total gain, its share and mean |SHAP| of a tree model's prediction trees, else None."""
    import xgboost as xgb

    booster = _booster(model)
    if booster is None:
        return None
    names = list(X.columns)
    gain = booster.get_score(importance_type="total_gain")  # keys f0, f1, ... (no feature names given)
    gains = np.array([gain.get(f"f{i}", 0.0) for i in range(len(names))])
    rows = X.to_numpy(np.float64)[-MAX_SHAP_ROWS:]
    contribs = booster.predict(xgb.DMatrix(rows), pred_contribs=True)
    shap = np.abs(contribs[:, :-1]).mean(axis=0)
    return pd.DataFrame(
        {
            "in_sample_gain": gains,
            "in_sample_gain_share": gains / gains.sum() if gains.sum() > 0 else gains,
            "in_sample_mean_abs_shap": shap,
        },
        index=pd.Index(names, name="feature"),
    )


def feature_importance(
    model, X: pd.DataFrame, fold_reports: Sequence[dict[str, Any]] | None = None
) -> pd.DataFrame | None:
    """Return the importance table: out-of-fold permutation columns first, then in-sample ones.

    Sorted by the out-of-sample figure when there is one, else by mean |SHAP|. None when there is
    neither (no purged CV and not a tree model).
    """
    parts = []
    if fold_reports:
        parts.append(out_of_fold_importance(fold_reports, X.columns))
    in_sample = in_sample_importance(model, X)
    if in_sample is not None:
        parts.append(in_sample)
    if not parts:
        return None
    table = pd.concat(parts, axis=1)
    key = "oos_permutation_logloss" if fold_reports else "in_sample_mean_abs_shap"
    return table.sort_values(key, ascending=False)


def plot_importance(table: pd.DataFrame, path: Path, title: str, top: int = 25) -> Path:
    """Horizontal bars of each importance column present, labelled out of sample or in sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("oos_permutation_logloss", "OUT OF SAMPLE: log-loss rise when permuted\n(purged out-of-fold)", "tab:green"),
        ("in_sample_mean_abs_shap", "in sample: mean |SHAP| (log-odds)\n(final model)", "tab:blue"),
        ("in_sample_gain_share", "in sample: total gain share\n(final model, same trees)", "tab:orange"),
    ]
    panels = [p for p in panels if p[0] in table.columns]
    t = table.head(top).iloc[::-1]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.3 * len(t) + 1.8), sharey=True)
    for ax, (column, label, color) in zip(np.atleast_1d(axes), panels):
        ax.barh(t.index, t[column], color=color)
        ax.set_title(label, fontsize=9)
    fig.suptitle(f"{title}: feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
