"""Parameter-learning feature plugins (GARCH) are refitted inside every CV fold.

The look-ahead check perturbs the bars of the last walk-forward test block (and everything after
it) and verifies that the earlier folds see nothing of it: their GARCH parameters and their
out-of-fold predictions are bit-identical, while the whole-window GARCH fit (the deployed one)
does change. Before per-fold fitting, every fold's volatility features used the whole-window fit,
so the earlier folds' predictions moved with the perturbed future.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.data.frames import MarketData
from lbml.features.base import FeaturePlugin
from lbml.research.folds import FoldFeatures
from lbml.models.artifact import load_artifact
from lbml.scenario import load_scenario, parse_scenario
from lbml.errors import DataError
from lbml.research.validation import PurgedSplit, cpcv, cross_val_predict_purged, purged_walk_forward
from lbml.workflows.prepare import Prepared, prepare, train_model

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BNBUSDT"


def _scenario(**validation):
    raw = load_scenario(ROOT / "scenarios" / "default.toml").to_dict()
    raw["name"] = "foldfit"
    raw["data"]["days"] = 4
    # bar-only plugins; GARCH lives in the volatility layer
    raw["features"] = {"plugins": [{"plugin": "technical"}, {"plugin": "volatility"}]}
    # a dead zone of 0 keeps the sample set fixed under the perturbation below (only exact-zero
    # 15-bar returns are dropped, and the perturbation preserves every 15-bar return)
    raw["labels"] = {"kind": "fixed_horizon", "horizon_bars": 15, "dead_zone_bps": 0.0}
    raw["model"] = {"plugin": "logistic"}  # uses every feature linearly: any change shows
    # no calibration block: on 4 days this logistic model ranks no better than chance there, the
    # calibrator maps it to the base rate and training refuses the constant model (lbml.models.degenerate)
    raw["validation"] = {"bootstrap_reps": 50, "calibration": "none"} | validation
    raw["report"] = {"tearsheet": False}
    return parse_scenario(raw)


def _perturb_from(prepared: Prepared, start: pd.Timestamp) -> Prepared:
    """Multiply OHLC of every bar from ``start`` on by a 15-periodic factor (±~0.5%).

    1-bar returns from ``start`` on change a lot (GARCH sees a volatility burst); every 15-bar
    return between two perturbed bars is unchanged, so the labels' sample set stays the same.
    """
    data = prepared.market[SYMBOL]
    bars = data.bars.copy()
    after = np.flatnonzero(bars.index >= start)
    pattern = np.exp(0.005 * np.random.default_rng(3).standard_normal(15))
    factor = pattern[(after - after[0]) % 15]
    for col in ("open", "high", "low", "close"):
        values = bars[col].to_numpy(copy=True)
        values[after] *= factor
        bars[col] = values
    instruments = dict(prepared.market.instruments) | {SYMBOL: replace(data, bars=bars)}
    market = MarketData(instruments, prepared.market.funding, prepared.market.bar_minutes)
    return Prepared(prepared.scenario, market, prepared.split)


def _oof(folder: Path) -> pd.Series:
    frame = pd.read_csv(folder / "reports" / "oof_predictions.csv", parse_dates=["ts"])
    return frame.set_index("ts")["p_oof"]


def _folds(folder: Path) -> dict:
    return json.loads((folder / "reports" / "cv_folds.json").read_text())


@pytest.mark.slow
def test_perturbing_a_later_test_block_leaves_earlier_folds_unchanged(tmp_path, registry):
    prepared = prepare(_scenario(n_splits=4), registry)
    window = prepared.market[SYMBOL].bars.loc[prepared.split.train_start : prepared.split.train_end].index
    # inside the last of the 4 test blocks (the development span is the whole window, cut into 5
    # groups: the last test block covers roughly 80%..100% of the window)
    start = window[int(0.9 * len(window))]
    a = train_model(prepared, registry, tmp_path / "a")
    b = train_model(_perturb_from(prepared, start), registry, tmp_path / "b")
    assert a.n_samples == b.n_samples

    # the deployed, whole-window GARCH fit sees the perturbed bars
    garch_a = load_artifact(tmp_path / "a", registry).feature_state["volatility"]["garch"]
    garch_b = load_artifact(tmp_path / "b", registry).feature_state["volatility"]["garch"]
    assert garch_a != garch_b

    # out-of-fold predictions before the perturbation are bit-identical, those after it moved
    pa, pb = _oof(tmp_path / "a"), _oof(tmp_path / "b")
    assert pa.index.equals(pb.index)
    before = pa.index < start
    assert before.sum() > 1000 and (~before).sum() > 100
    np.testing.assert_array_equal(pa[before].to_numpy(), pb[before].to_numpy())
    assert np.abs(pa[~before].to_numpy() - pb[~before].to_numpy()).max() > 1e-6

    # every fold was fitted on bars before its test block; the earlier folds' parameters are unchanged
    fa, fb = _folds(tmp_path / "a"), _folds(tmp_path / "b")
    assert fa["validation_method"] == "walk_forward(4)" and a.metrics["cv_refit_features"] == ["volatility"]
    splits_a, splits_b = fa["splits"], fb["splits"]
    assert len(splits_a) == len(splits_b) == 4
    last_test_start = pd.Timestamp(splits_a[-1]["test_bars"][0][0])
    assert pd.Timestamp(splits_a[-2]["test_bars"][-1][1]) < start <= pd.Timestamp(splits_a[-1]["test_bars"][-1][1])
    for sa, sb in zip(splits_a, splits_b):
        assert sa["test_bars"] == sb["test_bars"] and sa["fit_bars"] == sb["fit_bars"]
        (fit_start, fit_end), = sa["fit_bars"]  # walk-forward: one contiguous span
        assert pd.Timestamp(fit_end) < pd.Timestamp(sa["test_bars"][0][0]) <= last_test_start
        assert sa["fitted_state"] == sb["fitted_state"]
        assert sa["fitted_state"]["volatility"]["garch"] != garch_a  # a fold fit, not the whole window
    assert len({json.dumps(s["fitted_state"], sort_keys=True) for s in splits_a}) == 4


def test_only_parameter_learning_plugins_are_refitted(registry):
    learning = {name for name, cls in registry.features.items() if cls.learns_parameters()}
    assert learning == {"volatility"}
    assert not FeaturePlugin.learns_parameters()


def test_cpcv_folds_fit_around_their_test_groups(registry):
    """CPCV: a split fits on its training bars before and after the test groups, never inside them."""
    scenario = _scenario(method="cpcv", n_groups=4, n_test_groups=2)
    prepared = prepare(scenario, registry)
    from lbml.features.pipeline import compute_features
    from lbml.research.labels import make_labels
    from lbml.research.training import scenario_pipeline, window_inputs

    inputs = window_inputs(scenario, prepared.market, prepared.split)
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    pipeline.fit(inputs.bars)
    X = compute_features(pipeline, inputs.data, inputs.bars).dropna()
    labels = make_labels(inputs.bars, scenario.labels)
    t0 = X.index.intersection(labels.y.index)
    t1 = pd.DatetimeIndex(labels.t1.loc[t0])
    folds = FoldFeatures(pipeline, inputs.data, inputs.bars, None, None, X.loc[t0].to_numpy(), t0, t1)
    t0n, t1n = t0.asi8, t1.asi8
    splits = cpcv(t0, t1, 4, 2, pd.Timedelta(minutes=20))
    middle = next(s for s in splits if s.test_groups == (1, 2))  # training bars on both sides
    segments = folds.fit_segments(middle.train)
    assert len(segments) == 2
    bar_ns = inputs.bars.index.asi8
    test_lo, test_hi = t0n[middle.test].min(), t1n[middle.test].max()
    for a, b in segments:
        assert bar_ns[b - 1] < test_lo or bar_ns[a] > test_hi  # nothing inside the test groups' span
    X_fold, state = folds(middle)
    assert len(state["fit_bars"]) == 2 and state["n_fit_bars"] == sum(b - a for a, b in segments)
    used = np.union1d(middle.train, middle.test)
    assert np.isfinite(X_fold[used]).all() and np.isnan(np.delete(X_fold, used, axis=0)).all()
    # parameter-free columns are reused as computed once; only the volatility layer is replaced
    vol = [i for i, n in enumerate(pipeline.names) if n.startswith("vol_")]
    other = [i for i in range(len(pipeline.names)) if i not in vol]
    np.testing.assert_array_equal(X_fold[np.ix_(used, other)], X.loc[t0].to_numpy()[np.ix_(used, other)])
    garch_col = pipeline.names.index("vol_garch")
    assert not np.array_equal(X_fold[used, garch_col], X.loc[t0].to_numpy()[used, garch_col])
    # the same fold's parameters do not depend on the bars inside its test groups
    bars = inputs.bars.copy()
    inside = (bars.index.asi8 >= test_lo) & (bars.index.asi8 <= test_hi)
    bars.loc[inside, ["open", "high", "low", "close"]] *= 1.0 + 0.01 * np.sin(np.arange(inside.sum()))[:, None]
    other_folds = FoldFeatures(pipeline, inputs.data, bars, None, None, X.loc[t0].to_numpy(), t0, t1)
    assert other_folds(middle)[1]["fitted_state"] == state["fitted_state"]
    # walk-forward folds fit on a single span that ends before the test block
    for split in purged_walk_forward(t0, t1, 3, pd.Timedelta(minutes=20)):
        (a, b), = folds.fit_segments(split.train)
        assert bar_ns[b - 1] < t0n[split.test].min()
    # a fold too short for a GARCH fit is a DataError naming the split (training falls back to fewer splits)
    short = PurgedSplit(train=np.arange(80), test=np.arange(120, 400), test_groups=(1,))
    y = labels.y.loc[t0].to_numpy()
    with pytest.raises(DataError, match=r"validation split 1 of 1: fold feature fit on 95 training bars failed: .*GARCH needs >= 100"):
        cross_val_predict_purged(lambda: registry.model("logistic")(), X.loc[t0].to_numpy(), y, t0, t1, [short],
                                 fold_features=folds)
