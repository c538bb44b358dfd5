"""Training labels. Every label keeps its end time ``t1`` (when it resolves) for purging.

Three kinds (``[labels] kind``): ``fixed_horizon`` (direction of the h-bar log return outside a
dead zone), ``vol_scaled`` (the same with a neutral zone of k·σ̂·√h, σ̂ a trailing per-bar
volatility estimate) and ``triple_barrier`` (first touch of ±mult·σ̂·√h on the close path within h
bars, else the sign at the vertical barrier; t1 = time of the touch). σ̂ at bar t uses bars up to
t only. Labels are computed on the training window only, so a label that would resolve after the
window's last bar is never produced.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lbml.errors import ConfigError
from lbml.scenario import LabelsConfig


@dataclass(frozen=True)
class Labels:
    """``y`` (1 = up, 0 = down) and ``t1`` for the bars that got a label."""

    y: pd.Series
    t1: pd.Series
    forward_return: pd.Series


def forward_returns(bars: pd.DataFrame, horizon: int) -> tuple[np.ndarray, pd.Series]:
    """Every bar's log return over the next ``horizon`` bars and its end time (NaN/NaT at the end)."""
    close = bars["close"].to_numpy(np.float64)
    fwd = np.full(len(close), np.nan)
    t1 = pd.Series(pd.NaT, index=bars.index, dtype=bars.index.dtype)
    if len(close) > horizon:
        fwd[:-horizon] = np.log(close[horizon:] / close[:-horizon])
        t1.iloc[:-horizon] = bars.index[horizon:]
    return fwd, t1


def fixed_horizon_labels(bars: pd.DataFrame, config: LabelsConfig) -> Labels:
    """Direction of the log return over the next ``horizon_bars`` bars, with a dead zone.

    Bars whose absolute forward return is inside the dead zone (e.g. below round-trip costs) and the
    last ``horizon_bars`` bars (label unknown yet) get no label.
    """
    fwd, t1 = forward_returns(bars, config.horizon_bars)
    dead = config.dead_zone_bps / 1e4
    keep = np.isfinite(fwd) & (np.abs(fwd) > dead)
    y = pd.Series((fwd > 0).astype(np.int8), index=bars.index)[keep]
    return Labels(y=y, t1=t1[keep], forward_return=pd.Series(fwd, index=bars.index)[keep])


def trailing_volatility(bars: pd.DataFrame, estimator: str, window: int) -> pd.Series:
    """Per-bar volatility of log returns from bars up to and including t (no look-ahead).

    Parameters
    ----------
    bars : pandas.DataFrame
        Canonical bars (open, high, low, close).
    estimator : str
        ``realized`` (EWM std of close-to-close log returns, span ``window``), ``parkinson``,
        ``garman_klass``, ``yang_zhang`` (range estimators averaged over ``window`` bars) or
        ``atr`` (Wilder's average true range over ``window`` bars divided by the close: TA-Lib's
        ``ATR``, the first value the mean of true ranges 1..``window``, then
        ATR ← (ATR·(window − 1) + TR) / window).
    window : int
        Window length in bars.

    Returns
    -------
    pandas.Series
        σ̂_t per bar (NaN until the window is full).
    """
    o, h, lo, c = (np.log(bars[k].astype(np.float64)) for k in ("open", "high", "low", "close"))
    prev_c = c.shift(1)
    if estimator == "realized":
        return (c - prev_c).ewm(span=window, min_periods=window).std()
    hl = h - lo
    if estimator == "parkinson":
        var = (hl**2).rolling(window).mean() / (4.0 * math.log(2.0))
    elif estimator == "garman_klass":
        co = c - o
        var = (0.5 * hl**2 - (2.0 * math.log(2.0) - 1.0) * co**2).rolling(window).mean()
    elif estimator == "yang_zhang":
        overnight = o - prev_c
        open_close = c - o
        rs = (h - c) * (h - o) + (lo - c) * (lo - o)
        k = 0.34 / (1.34 + (window + 1) / (window - 1))
        var = (
            overnight.rolling(window).var()
            + k * open_close.rolling(window).var()
            + (1.0 - k) * rs.rolling(window).mean()
        )
    elif estimator == "atr":
        return _wilder_atr(bars, window) / bars["close"].astype(np.float64)
    else:
        raise ConfigError(f"labels.vol_estimator: unknown estimator {estimator!r}")
    return np.sqrt(var.clip(lower=0.0))


def _wilder_atr(bars: pd.DataFrame, window: int) -> pd.Series:
    high, low = bars["high"].to_numpy(np.float64), bars["low"].to_numpy(np.float64)
    close = bars["close"].to_numpy(np.float64)
    prev = np.concatenate(([np.nan], close[:-1]))
    tr = np.maximum.reduce([high - low, np.abs(high - prev), np.abs(low - prev)])  # NaN on bar 0
    atr = np.full(len(close), np.nan)
    if len(close) > window:
        value = tr[1 : window + 1].mean()
        atr[window] = value
        for i in range(window + 1, len(close)):
            value = (value * (window - 1) + tr[i]) / window
            atr[i] = value
    return pd.Series(atr, index=bars.index)


def vol_scaled_labels(bars: pd.DataFrame, config: LabelsConfig) -> Labels:
    """Direction of the h-bar log return where it exceeds ``vol_k * σ̂_t * sqrt(h)``, else no label."""
    h = config.horizon_bars
    base = fixed_horizon_labels(bars, config)
    sigma = trailing_volatility(bars, config.vol_estimator, config.vol_window).loc[base.y.index]
    tau = config.vol_k * sigma.to_numpy() * math.sqrt(h)
    fwd = base.forward_return.to_numpy()
    keep = np.isfinite(tau) & (np.abs(fwd) > tau)
    return Labels(y=base.y[keep], t1=base.t1[keep], forward_return=base.forward_return[keep])


def triple_barrier_labels(bars: pd.DataFrame, config: LabelsConfig) -> Labels:
    """Side of the first barrier the close path touches within ``horizon_bars`` bars.

    Barriers: ``+profit_mult·σ̂_t·√h`` (label 1) and ``−stop_mult·σ̂_t·√h`` (label 0) in log return
    from bar t's close; if neither is touched, the sign of the return at the vertical barrier
    (no label inside the dead zone). ``t1`` is the touch time (or the vertical barrier);
    ``forward_return`` the log return at ``t1``.
    """
    h = config.horizon_bars
    close = np.log(bars["close"].to_numpy(np.float64))
    n = len(close)
    empty = bars.index[:0]
    if n <= h:
        return Labels(pd.Series([], index=empty, dtype=np.int8), pd.Series([], index=empty, dtype=bars.index.dtype),
                      pd.Series([], index=empty, dtype=np.float64))
    sigma = trailing_volatility(bars, config.vol_estimator, config.vol_window).to_numpy()[: n - h]
    unit = sigma * math.sqrt(h)
    # path[i, j] = log return from bar i's close to bar i+j+1's close, j < h
    windows = np.lib.stride_tricks.sliding_window_view(close[1:], h)[: n - h]
    path = windows - close[: n - h, None]
    up = path >= (config.profit_mult * unit)[:, None]
    down = path <= -(config.stop_mult * unit)[:, None]
    never = h
    first_up = np.where(up.any(axis=1), up.argmax(axis=1), never)
    first_down = np.where(down.any(axis=1), down.argmax(axis=1), never)
    touched = np.minimum(first_up, first_down)
    end = np.where(touched < never, touched, h - 1)
    ret = path[np.arange(n - h), end]
    y = np.where(touched < never, (first_up < first_down).astype(np.int8), (ret > 0).astype(np.int8))
    dead = config.dead_zone_bps / 1e4
    keep = np.isfinite(unit) & ((touched < never) | (np.abs(ret) > dead))
    idx = bars.index[: n - h]
    t1 = pd.Series(bars.index[np.arange(n - h) + end + 1], index=idx)
    return Labels(
        y=pd.Series(y, index=idx)[keep],
        t1=t1[keep],
        forward_return=pd.Series(ret, index=idx)[keep],
    )


def make_labels(bars: pd.DataFrame, config: LabelsConfig) -> Labels:
    """Compute the labels the scenario's ``[labels]`` section asks for."""
    if config.kind == "fixed_horizon":
        return fixed_horizon_labels(bars, config)
    if config.kind == "vol_scaled":
        return vol_scaled_labels(bars, config)
    return triple_barrier_labels(bars, config)


def sample_uniqueness(index: pd.DatetimeIndex, t1: pd.Series, bar_index: pd.DatetimeIndex) -> pd.Series:
    """Average uniqueness ū_i = mean over i's span [t0_i, t1_i] of 1/c_t (c_t = labels covering bar t)."""
    pos0 = bar_index.get_indexer(index)
    pos1 = bar_index.get_indexer(pd.DatetimeIndex(t1.to_numpy()))
    if (pos0 < 0).any() or (pos1 < 0).any():
        raise ValueError("label times must be bar times")
    cover = np.zeros(len(bar_index) + 1)
    np.add.at(cover, pos0, 1.0)
    np.add.at(cover, pos1 + 1, -1.0)
    c = np.cumsum(cover)[:-1]
    inv = np.where(c > 0, 1.0 / np.maximum(c, 1.0), 0.0)
    csum = np.concatenate([[0.0], np.cumsum(inv)])
    u = (csum[pos1 + 1] - csum[pos0]) / (pos1 - pos0 + 1)
    return pd.Series(u, index=index)


def label_spec(config: LabelsConfig) -> dict:
    return config.model_dump(mode="json")
