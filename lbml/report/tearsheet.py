"""The quantstats HTML tearsheet, benchmarked against buy-and-hold of the traded asset."""

import logging
import warnings
from pathlib import Path

import pandas as pd

from lbml.report.metrics import daily_returns


def tearsheet_skip_reason(equity: pd.DataFrame, freq: str = "1D") -> str | None:
    """Return why quantstats cannot build a tearsheet for this curve, or None if it can."""
    returns = daily_returns(equity["equity"], freq)
    if len(returns) < 2:
        return "backtest shorter than two days" if freq == "1D" else f"curve shorter than two {freq} periods"
    if returns.std() == 0.0:
        return "strategy equity never changed (no trades)"
    return None


def write_tearsheet(
    equity: pd.DataFrame, path: Path, title: str, periods_per_year: int = 365, freq: str = "1D"
) -> Path:
    """Write the quantstats HTML tearsheet (check ``tearsheet_skip_reason`` first).

    ``freq`` samples the returns (``"1D"`` by default; ``"1h"`` with ``periods_per_year`` = 8760
    for curves shorter than a few days, such as a short paper session).
    """
    returns = daily_returns(equity["equity"], freq).rename("Strategy")
    benchmark = daily_returns(equity["close"], freq).rename("Buy & hold")
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import quantstats as qs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qs.reports.html(
            returns,
            benchmark=benchmark,
            output=str(path),
            title=title,
            periods_per_year=periods_per_year,
        )
    return path
