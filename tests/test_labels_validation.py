"""Labels (all kinds keep t1; no look-ahead in σ̂) and purged walk-forward / CPCV with embargo."""

import math

import numpy as np
import pandas as pd
import pytest

from lbml.research.labels import make_labels, sample_uniqueness, trailing_volatility
from lbml.scenario import LabelsConfig
from lbml.research.validation import cpcv, cpcv_paths, cross_val_predict_purged, n_cpcv_paths, purged_walk_forward


def _bars(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.0002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.0005, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.0005, n)))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=idx)


KINDS = [
    LabelsConfig(kind="fixed_horizon", horizon_bars=10, dead_zone_bps=2),
    *[LabelsConfig(kind="vol_scaled", horizon_bars=10, vol_estimator=e, vol_window=50, vol_k=0.3)
      for e in ("realized", "parkinson", "garman_klass", "yang_zhang", "atr")],
    LabelsConfig(kind="triple_barrier", horizon_bars=20, vol_window=50, profit_mult=1.0, stop_mult=0.5),
]


@pytest.mark.parametrize("config", KINDS, ids=lambda c: f"{c.kind}-{c.vol_estimator}")
def test_labels_keep_t1_and_do_not_depend_on_data_after_t1(config):
    bars = _bars()
    labels = make_labels(bars, config)
    assert len(labels.y) > 500 and set(labels.y.unique()) == {0, 1}
    assert (labels.t1.index == labels.y.index).all()
    assert (labels.t1 > labels.t1.index).all()
    assert (labels.t1 <= labels.t1.index + pd.Timedelta(minutes=config.horizon_bars)).all()
    # Perturb everything after a cut: every label that resolved before the cut is unchanged.
    cut = bars.index[2000]
    other = bars.copy()
    other.loc[other.index > cut, ["open", "high", "low", "close"]] *= 1.05
    again = make_labels(other, config)
    done = labels.t1[labels.t1 <= cut].index
    pd.testing.assert_series_equal(labels.y.loc[done], again.y.loc[done])
    pd.testing.assert_series_equal(labels.t1.loc[done], again.t1.loc[done])


def test_triple_barrier_first_touch():
    idx = pd.date_range("2024-01-01", periods=300, freq="1min", tz="UTC")
    close = np.full(300, 100.0)
    close[200:] = 100.0 * np.exp(np.linspace(0.0, 0.05, 100))  # a steady climb after bar 200
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=idx)
    bars.iloc[:200, 0] = 100.0 * np.exp(np.random.default_rng(0).normal(0, 1e-3, 200))  # some range for σ̂
    bars["high"] = bars[["open", "close"]].max(axis=1) * 1.001
    bars["low"] = bars[["open", "close"]].min(axis=1) * 0.999
    config = LabelsConfig(kind="triple_barrier", horizon_bars=30, vol_estimator="parkinson", vol_window=20,
                          profit_mult=0.5, stop_mult=0.5)
    labels = make_labels(bars, config)
    i = idx[210]
    assert labels.y.loc[i] == 1
    assert labels.t1.loc[i] < i + pd.Timedelta(minutes=30)  # touched before the vertical barrier


def test_volatility_estimators_agree_on_scale():
    bars = _bars(5000)
    values = {e: trailing_volatility(bars, e, 200).iloc[-1] for e in ("realized", "parkinson", "garman_klass", "yang_zhang")}
    assert all(0.0003 < v < 0.003 for v in values.values()), values


def test_sample_uniqueness():
    idx = pd.date_range("2024-01-01", periods=10, freq="1min", tz="UTC")
    t1 = pd.Series([idx[1], idx[1], idx[5]], index=idx[[0, 1, 4]])
    u = sample_uniqueness(t1.index, t1, idx)
    # bar 0: c=1, bar 1: c=2 → sample 0: (1 + 1/2)/2; sample 1: spans bar 1 only: 1/2; sample 2: bars 4,5 alone: 1
    assert u.tolist() == pytest.approx([0.75, 0.5, 1.0])


def _spans(n=600, h=10):
    t0 = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    return t0, t0 + pd.Timedelta(minutes=h)


def _assert_purged(split, t0, t1, embargo):
    a0, a1 = t0.asi8, t1.asi8
    for start, stop in _blocks(split.test):
        b0, b1 = a0[start:stop + 1].min(), a1[start:stop + 1].max()
        tr0, tr1 = a0[split.train], a1[split.train]
        assert not ((tr0 <= b1) & (tr1 >= b0)).any(), "a training label overlaps the test block"
        assert not ((tr0 > b1) & (tr0 <= b1 + embargo.value)).any(), "a training sample sits in the embargo"


def _blocks(test):
    breaks = np.flatnonzero(np.diff(test) > 1)
    starts = np.concatenate([[test[0]], test[breaks + 1]])
    stops = np.concatenate([test[breaks], [test[-1]]])
    return list(zip(starts, stops))


def test_walk_forward_is_purged_and_only_looks_back():
    t0, t1 = _spans()
    embargo = pd.Timedelta(minutes=6)
    splits = purged_walk_forward(t0, t1, n_splits=4, embargo=embargo)
    assert len(splits) == 4
    for split in splits:
        assert split.train.max() < split.test.min()
        assert split.test.min() - split.train.max() > 10  # the label horizon was purged
        _assert_purged(split, t0, t1, embargo)
    sliding = purged_walk_forward(t0, t1, n_splits=4, embargo=embargo, expanding=False, train_groups=1)
    assert sliding[-1].train.min() > 0 and len(sliding[-1].train) < len(splits[-1].train)


def test_cpcv_splits_paths_and_purging():
    t0, t1 = _spans()
    embargo = pd.Timedelta(minutes=6)
    splits = cpcv(t0, t1, n_groups=6, n_test_groups=2, embargo=embargo)
    assert len(splits) == math.comb(6, 2) == 15 and n_cpcv_paths(6, 2) == 5
    for split in splits:
        assert not set(split.train) & set(split.test)
        _assert_purged(split, t0, t1, embargo)
    paths = cpcv_paths(splits, 6)
    assert len(paths) == 5 and all(sorted(p) == list(range(6)) for p in paths)


def test_variable_length_labels_are_purged_by_t1_not_by_rows():
    t0 = pd.date_range("2024-01-01", periods=400, freq="1min", tz="UTC")
    t1 = t0 + pd.Timedelta(minutes=2)
    t1 = t1.where(np.arange(400) != 150, t0[150] + pd.Timedelta(minutes=200))  # one long label
    split = purged_walk_forward(t0, t1, n_splits=1)[0]  # tests samples 200..399
    assert 150 not in split.train and 149 in split.train


def test_out_of_fold_predictions_only_come_from_models_that_never_saw_the_test_labels(registry):
    rng = np.random.default_rng(3)
    n = 900
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + rng.normal(0, 1, n) > 0).astype(int)
    t0, t1 = _spans(n, 5)
    splits = cpcv(t0, t1, 6, 2, pd.Timedelta(minutes=5))
    oof = cross_val_predict_purged(lambda: registry.model("logistic")(), X, y, t0, t1, splits, n_groups=6)
    assert oof.paths.shape == (n, 5) and not np.isnan(oof.paths).any()
    # Flipping the labels of group 0 changes no prediction for group 0 (its models never saw them).
    y2 = y.copy()
    y2[:150] = 1 - y2[:150]
    oof2 = cross_val_predict_purged(lambda: registry.model("logistic")(), X, y2, t0, t1, splits, n_groups=6)
    np.testing.assert_allclose(oof.paths[:150], oof2.paths[:150])
    assert not np.allclose(oof.paths[150:], oof2.paths[150:])


def test_too_many_splits_for_the_data_is_a_one_line_user_error(registry):
    from lbml.errors import DataError

    t0, t1 = _spans(120, 5)
    X = np.random.default_rng(0).normal(size=(120, 2))
    y = (X[:, 0] > 0).astype(int)
    splits = purged_walk_forward(t0, t1, n_splits=10)
    with pytest.raises(DataError, match="use fewer splits or more data"):
        cross_val_predict_purged(lambda: registry.model("logistic")(), X, y, t0, t1, splits)
