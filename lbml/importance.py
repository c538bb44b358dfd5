"""Feature importance: XGBoost gain and mean |SHAP| (XGBoost ``pred_contribs``), table and PNG.

Other model plugins report no importance table (``feature_importance`` returns None): permutation
importance on time series with overlapping labels needs its own purged protocol.
"""

from pathlib import Path

import numpy as np
import pandas as pd

MAX_SHAP_ROWS = 20_000


def _booster(model):
    base = getattr(model, "base", model)  # unwrap a CalibratedModel
    return getattr(base, "booster_", None), base


def feature_importance(model, X: pd.DataFrame) -> pd.DataFrame | None:
    """Return gain and mean |SHAP| per feature (sorted by SHAP), or None for non-tree models.

    SHAP values are computed on the last ``MAX_SHAP_ROWS`` rows of ``X`` (raw margin contributions,
    the bias column dropped).
    """
    import xgboost as xgb

    booster, base = _booster(model)
    if booster is None:
        return None
    names = list(X.columns)
    gain = booster.get_score(importance_type="gain")  # keys f0, f1, ... (no feature names given)
    gains = np.array([gain.get(f"f{i}", 0.0) for i in range(len(names))])
    rows = X.to_numpy(np.float64)[-MAX_SHAP_ROWS:]
    contribs = booster.predict(xgb.DMatrix(rows), pred_contribs=True, iteration_range=base._iteration_range)
    shap = np.abs(contribs[:, :-1]).mean(axis=0)
    table = pd.DataFrame(
        {"gain": gains, "gain_share": gains / gains.sum() if gains.sum() > 0 else gains, "mean_abs_shap": shap},
        index=pd.Index(names, name="feature"),
    )
    return table.sort_values("mean_abs_shap", ascending=False)


def plot_importance(table: pd.DataFrame, path: Path, title: str, top: int = 25) -> Path:
    """Horizontal bars of mean |SHAP| and gain share for the top features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.head(top).iloc[::-1]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 0.3 * len(t) + 1.5), sharey=True)
    a1.barh(t.index, t["mean_abs_shap"], color="tab:blue")
    a1.set_title("mean |SHAP| (log-odds)")
    a2.barh(t.index, t["gain_share"], color="tab:orange")
    a2.set_title("gain share")
    fig.suptitle(f"{title}: feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
