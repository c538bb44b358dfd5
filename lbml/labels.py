"""Training labels. Every label keeps its end time ``t1`` (when it resolves) for purging."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lbml.scenario import LabelsConfig


@dataclass(frozen=True)
class Labels:
    """``y`` (1 = up, 0 = down) and ``t1`` for the bars that got a label."""

    y: pd.Series
    t1: pd.Series
    forward_return: pd.Series


def fixed_horizon_labels(bars: pd.DataFrame, config: LabelsConfig) -> Labels:
    """Direction of the log return over the next ``horizon_bars`` bars, with a dead zone.

    Bars whose absolute forward return is inside the dead zone (e.g. below round-trip costs) and the
    last ``horizon_bars`` bars (label unknown yet) get no label.
    """
    h = config.horizon_bars
    close = bars["close"].to_numpy(np.float64)
    fwd = np.full(len(close), np.nan)
    if len(close) > h:
        fwd[:-h] = np.log(close[h:] / close[:-h])
    t1 = pd.Series(pd.NaT, index=bars.index, dtype=bars.index.dtype)
    if len(close) > h:
        t1.iloc[:-h] = bars.index[h:]
    dead = config.dead_zone_bps / 1e4
    keep = np.isfinite(fwd) & (np.abs(fwd) > dead)
    y = pd.Series((fwd > 0).astype(np.int8), index=bars.index)[keep]
    return Labels(y=y, t1=t1[keep], forward_return=pd.Series(fwd, index=bars.index)[keep])


def label_spec(config: LabelsConfig) -> dict:
    return config.model_dump(mode="json")
