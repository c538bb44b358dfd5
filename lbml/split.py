"""The chronological split between the training window and the backtest window."""

from dataclasses import dataclass

import pandas as pd

from lbml.errors import DataError
from lbml.scenario import Scenario


@dataclass(frozen=True)
class Split:
    """Training uses bars in [train_start, train_end] whose labels resolve by train_end; the
    backtest trades (test_start, test_end], starting ``embargo_bars`` after the training window."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def compute_split(bar_index: pd.DatetimeIndex, scenario: Scenario) -> Split:
    n = len(bar_index)
    n_train = int(n * scenario.split.train_fraction)
    gap = scenario.split.embargo_bars
    min_train = 200
    if n_train < min_train or n - n_train - gap < 100:
        raise DataError(
            f"not enough bars to split: {n} bars give {n_train} for training (need {min_train}) "
            f"and {max(0, n - n_train - gap)} for the backtest (need 100)"
        )
    return Split(
        train_start=bar_index[0],
        train_end=bar_index[n_train - 1],
        test_start=bar_index[n_train - 1 + gap],
        test_end=bar_index[-1],
    )
