"""Purged walk-forward and combinatorial purged cross-validation (CPCV) with embargo.

Every sample i spans ``[t0_i, t1_i]`` (its bar time and the time its label resolves). For each
test group, training samples whose span overlaps the group's span are dropped (purge), and so are
training samples starting within ``embargo`` after the group ends (embargo). Purging works on t1
itself, not on a fixed number of rows: triple-barrier labels end at different times and dead-zone
labels leave gaps, so a row-count purge (what skfolio's ``CombinatorialPurgedCV`` does) would be
either too weak or wasteful here.

``cross_val_predict_purged`` fits a fresh model per split; early stopping uses a purged block at
the end of the split's *training* samples, never the test group. Out-of-fold predictions are kept:
one column per backtest path for CPCV (φ = k/N·C(N, k) paths), one for walk-forward. With
``fold_features`` each split trains and predicts on its own feature matrix, in which the features
of parameter-learning plugins (GARCH) were fitted on that split's training rows only
(``lbml.research.folds``). ``fold_report`` sees each split's model with its test block, e.g. for
out-of-fold permutation importance (``lbml.research.importance``).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from math import comb
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lbml.errors import DataError
from lbml.models.base import ModelPlugin

if TYPE_CHECKING:
    from lbml.sweeps import Sweep


MIN_FOLD_CALIBRATION = 100  # smaller validation blocks leave a fold's predictions uncalibrated


@dataclass(frozen=True)
class PurgedSplit:
    """Positions (into the sample arrays) of one split's training and test samples."""

    train: np.ndarray
    test: np.ndarray
    test_groups: tuple[int, ...]


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold P(class 1): ``paths[:, j]`` is backtest path j (NaN where no test prediction)."""

    paths: np.ndarray
    n_splits: int
    n_fit: list[int] = field(default_factory=list)
    #: per split, what ``fold_features`` reported (fitted feature parameters and the bars they saw)
    feature_states: list[dict[str, Any]] = field(default_factory=list)
    #: per split, what ``fold_report`` returned for the split's model on its test block
    fold_reports: list[Any] = field(default_factory=list)
    #: the fold models' scores before each fold's calibration map (ranking metrics: AUC, IC)
    raw_paths: np.ndarray | None = None

    @property
    def mean(self) -> np.ndarray:
        """Mean prediction over paths (NaN where never tested)."""
        return _path_mean(self.paths)

    @property
    def raw_mean(self) -> np.ndarray:
        """Mean uncalibrated score over paths (the calibrated one when folds are not calibrated)."""
        return _path_mean(self.raw_paths if self.raw_paths is not None else self.paths)

    @property
    def tested(self) -> np.ndarray:
        return ~np.isnan(self.paths).all(axis=1)


def _path_mean(paths: np.ndarray) -> np.ndarray:
    if paths.shape[1] == 1:
        return paths[:, 0]
    counts = (~np.isnan(paths)).sum(axis=1)
    sums = np.nansum(paths, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _as_ns(times) -> np.ndarray:
    return pd.DatetimeIndex(times).asi8


def group_bounds(n: int, n_groups: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``n_groups`` contiguous blocks of near-equal size: ``[(start, stop), ...]``."""
    edges = np.linspace(0, n, n_groups + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def purge_train(
    candidates: np.ndarray,
    test: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    embargo_ns: int,
    blocks: list[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Drop from ``candidates`` every sample overlapping a test block, or starting in its embargo.

    ``blocks`` are the contiguous (start, stop) position ranges making up ``test``; when omitted the
    test set is treated as one block.
    """
    if blocks is None:
        blocks = [(int(test.min()), int(test.max()) + 1)] if len(test) else []
    keep = np.ones(len(candidates), dtype=bool)
    c0, c1 = t0[candidates], t1[candidates]
    for start, stop in blocks:
        b0 = t0[start:stop].min()
        b1 = t1[start:stop].max()
        overlaps = (c0 <= b1) & (c1 >= b0)
        embargoed = (c0 > b1) & (c0 <= b1 + embargo_ns)
        keep &= ~(overlaps | embargoed)
    return candidates[keep]


def purged_walk_forward(
    t0, t1, n_splits: int = 5, embargo: pd.Timedelta = pd.Timedelta(0), *, expanding: bool = True,
    train_groups: int | None = None,
) -> list[PurgedSplit]:
    """Chronological folds: the data is cut into ``n_splits + 1`` blocks; fold k tests block k+1.

    With ``expanding`` the model trains on every earlier block, otherwise on the last
    ``train_groups`` blocks (a sliding window). Training samples are purged by t1 and embargoed.
    """
    t0n, t1n = _as_ns(t0), _as_ns(t1)
    blocks = group_bounds(len(t0n), n_splits + 1)
    splits = []
    width = train_groups or n_splits
    for k in range(1, n_splits + 1):
        first = 0 if expanding else max(0, k - width)
        candidates = np.arange(blocks[first][0], blocks[k][0])
        test = np.arange(*blocks[k])
        train = purge_train(candidates, test, t0n, t1n, int(embargo.value))
        splits.append(PurgedSplit(train=train, test=test, test_groups=(k,)))
    return splits


def cpcv(
    t0, t1, n_groups: int = 6, n_test_groups: int = 2, embargo: pd.Timedelta = pd.Timedelta(0)
) -> list[PurgedSplit]:
    """Combinatorial purged CV: every choice of ``n_test_groups`` of ``n_groups`` blocks is a test set.

    Gives C(N, k) splits and φ = k/N·C(N, k) backtest paths (see :func:`cpcv_paths`).
    """
    if not 0 < n_test_groups < n_groups:
        raise ValueError("need 0 < n_test_groups < n_groups")
    t0n, t1n = _as_ns(t0), _as_ns(t1)
    n = len(t0n)
    blocks = group_bounds(n, n_groups)
    splits = []
    for chosen in combinations(range(n_groups), n_test_groups):
        test_blocks = [blocks[g] for g in chosen]
        test = np.concatenate([np.arange(a, b) for a, b in test_blocks])
        in_test = np.zeros(n, dtype=bool)
        in_test[test] = True
        candidates = np.flatnonzero(~in_test)
        train = purge_train(candidates, test, t0n, t1n, int(embargo.value), test_blocks)
        splits.append(PurgedSplit(train=train, test=test, test_groups=chosen))
    return splits


def n_cpcv_paths(n_groups: int, n_test_groups: int) -> int:
    return n_test_groups * comb(n_groups, n_test_groups) // n_groups


def cpcv_paths(splits: list[PurgedSplit], n_groups: int) -> list[dict[int, int]]:
    """Assign each (group → split index) so that every path covers every group exactly once."""
    n_paths = n_cpcv_paths(n_groups, len(splits[0].test_groups))
    used = {g: 0 for g in range(n_groups)}
    paths: list[dict[int, int]] = [{} for _ in range(n_paths)]
    for s, split in enumerate(splits):
        for g in split.test_groups:
            paths[used[g]][g] = s
            used[g] += 1
    return paths


def early_stopping_block(
    train: np.ndarray, t0: np.ndarray, t1: np.ndarray, fraction: float, embargo_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training positions into (fit, validation): validation is the chronologically
    last ``fraction`` of them; fit samples overlapping it (or in its embargo) are purged."""
    n_val = max(1, int(len(train) * fraction))
    val = train[-n_val:]
    fit = purge_train(train[:-n_val], val, t0, t1, embargo_ns)
    return fit, val


def cross_val_predict_purged(
    make_model: Callable[[], ModelPlugin],
    X: np.ndarray,
    y: np.ndarray,
    t0,
    t1,
    splits: list[PurgedSplit],
    *,
    n_groups: int | None = None,
    embargo: pd.Timedelta = pd.Timedelta(0),
    sample_weight: np.ndarray | None = None,
    early_stopping_fraction: float = 0.15,
    calibration: str | None = None,
    on_fold: Callable[[int, float], None] | None = None,
    fold_features: Callable[["PurgedSplit"], tuple[np.ndarray, dict[str, Any]]] | None = None,
    trainable: np.ndarray | None = None,
    fold_report: Callable[[ModelPlugin, np.ndarray, np.ndarray], Any] | None = None,
    sweep: "Sweep | None" = None,
) -> OutOfFold:
    """Fit a fresh model per split and keep its test predictions (P(class 1)).

    For CPCV splits pass ``n_groups``: predictions are then arranged into backtest paths. With
    ``calibration`` ("auto", "sigmoid" or "isotonic") each fold's predictions are calibrated by a
    map fitted on that fold's purged validation block (the one used for early stopping).
    ``on_fold(k, logloss)`` is called after each split with its test log loss (e.g. for pruning).
    ``fold_features(split)`` returns ``(X_split, state)``: the matrix that split trains, early-stops,
    calibrates and predicts on instead of ``X`` (e.g. features refitted on its training rows, see
    ``lbml.research.folds.FoldFeatures``), and a JSON-able record kept in ``OutOfFold.feature_states``.
    ``trainable`` marks the samples with a label: only they are fitted, early-stopped and calibrated
    on, while every test sample gets a prediction (e.g. bars in a label's dead zone, which the
    strategy can still trade).
    ``fold_report(model, X_test, y_test)`` is called with each split's fitted (uncalibrated) model and
    its labelled test samples; the results are kept in ``OutOfFold.fold_reports``.
    ``sweep`` (``lbml.sweeps``) fits the splits as independent tasks, e.g. on Dask; the result is
    the serial one, bit for bit.
    """
    t0n, t1n = _as_ns(t0), _as_ns(t1)
    shared = {
        "make_model": make_model, "X": np.asarray(X, dtype=np.float64), "y": np.asarray(y), "t0n": t0n, "t1n": t1n,
        "n_splits": len(splits), "embargo_ns": int(embargo.value), "sample_weight": sample_weight,
        "early_stopping_fraction": early_stopping_fraction, "calibration": calibration,
        "fold_features": fold_features, "trainable": trainable, "fold_report": fold_report,
    }
    items = list(enumerate(splits))
    if sweep is None:  # one split after the other: ``on_fold`` may stop the loop (pruning) early
        fits = []
        for item in items:
            fits.append(fit_split(item, **shared))
            if on_fold is not None:
                on_fold(item[0], fits[-1].loss)
    else:  # every split at once as independent tasks; ``on_fold`` sees them afterwards, in order
        fits = sweep.map(fit_split, items, **shared)
        for k, fitted in enumerate(fits):
            if on_fold is not None:
                on_fold(k, fitted.loss)
    states = [f.state for f in fits if f.state is not None]
    reports = [f.report for f in fits] if fold_report is not None else []
    return OutOfFold(
        _arrange([f.p for f in fits], splits, len(y), n_groups), len(splits), [f.n_fit for f in fits], states, reports,
        raw_paths=_arrange([f.raw for f in fits], splits, len(y), n_groups),
    )


@dataclass(frozen=True)
class FoldFit:
    """What one split of :func:`cross_val_predict_purged` produced."""

    p: np.ndarray
    raw: np.ndarray
    n_fit: int
    state: dict[str, Any] | None
    report: Any
    loss: float


def fit_split(
    item: tuple[int, PurgedSplit],
    *,
    make_model: Callable[[], ModelPlugin],
    X: np.ndarray,
    y: np.ndarray,
    t0n: np.ndarray,
    t1n: np.ndarray,
    n_splits: int,
    embargo_ns: int,
    sample_weight: np.ndarray | None,
    early_stopping_fraction: float,
    calibration: str | None,
    fold_features: Callable[["PurgedSplit"], tuple[np.ndarray, dict[str, Any]]] | None,
    trainable: np.ndarray | None,
    fold_report: Callable[[ModelPlugin, np.ndarray, np.ndarray], Any] | None,
) -> FoldFit:
    """Fit split ``item = (k, split)``'s model and predict its test samples (a pure function of its inputs)."""
    from lbml.sweeps import one_blas_thread

    with one_blas_thread():
        return _fit_split(item, make_model=make_model, X=X, y=y, t0n=t0n, t1n=t1n, n_splits=n_splits,
                          embargo_ns=embargo_ns, sample_weight=sample_weight,
                          early_stopping_fraction=early_stopping_fraction, calibration=calibration,
                          fold_features=fold_features, trainable=trainable, fold_report=fold_report)


def _fit_split(item, *, make_model, X, y, t0n, t1n, n_splits, embargo_ns, sample_weight, early_stopping_fraction,
               calibration, fold_features, trainable, fold_report) -> FoldFit:
    from sklearn.metrics import log_loss

    from lbml.models.calibration import calibration_method, fit_calibrator

    k, split = item
    fit, val = early_stopping_block(split.train, t0n, t1n, early_stopping_fraction, embargo_ns)
    if trainable is not None:
        fit, val = fit[trainable[fit]], val[trainable[val]]
    if len(fit) < 50 or len(np.unique(y[fit])) < 2:
        raise DataError(
            f"validation split {k + 1} of {n_splits}: only {len(fit)} purged training samples "
            f"({len(np.unique(y[fit]))} class) - use fewer splits or more data"
        )
    Xs, state = X, None
    if fold_features is not None:
        try:
            Xs, state = fold_features(split)
        except DataError as exc:
            raise DataError(f"validation split {k + 1} of {n_splits}: {exc}") from None
    model = make_model()
    weight = sample_weight[fit] if sample_weight is not None else None
    both = len(np.unique(y[val])) > 1
    eval_set = (Xs[val], y[val]) if both else None
    extra = {"t0": t0n[fit], "t1": t1n[fit]} if getattr(model, "uses_label_times", False) else {}
    model.fit(Xs[fit], y[fit], sample_weight=weight, eval_set=eval_set, **extra)
    proba = model.predict_proba(Xs[split.test])
    p = raw = proba[:, list(model.classes_).index(1)]
    if calibration is not None and both and len(val) >= MIN_FOLD_CALIBRATION:
        method = calibration_method(len(val)) if calibration == "auto" else calibration
        p = fit_calibrator(model, Xs[val], y[val], method).apply(p)
    scored = trainable[split.test] if trainable is not None else slice(None)
    report = fold_report(model, Xs[split.test][scored], y[split.test][scored]) if fold_report is not None else None
    loss = float(log_loss(y[split.test][scored], np.clip(p[scored], 1e-7, 1 - 1e-7), labels=[0, 1]))
    return FoldFit(p, raw, int(len(fit)), state, report, loss)


def _arrange(preds: list[np.ndarray], splits: list[PurgedSplit], n: int, n_groups: int | None) -> np.ndarray:
    """Per-split test predictions laid out by sample (one column, or one per CPCV backtest path)."""
    if n_groups is None:
        out = np.full((n, 1), np.nan)
        for split, p in zip(splits, preds):
            out[split.test, 0] = p
        return out
    blocks = group_bounds(n, n_groups)
    assignment = cpcv_paths(splits, n_groups)
    out = np.full((n, len(assignment)), np.nan)
    for j, path in enumerate(assignment):
        for g, s in path.items():
            a, b = blocks[g]
            split = splits[s]
            pos = np.searchsorted(split.test, np.arange(a, b))
            out[a:b, j] = preds[s][pos]
    return out
