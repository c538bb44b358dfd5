"""Does the loaded market fit the scenario? Symbol, price level, holes and spikes, checked on load.

Every command that loads a scenario's market (``backtest``, ``train``, ``paper``, ``features``,
``feed serve``, ...) runs these checks through :func:`lbml.data.sources.load_market` and refuses,
in one line, data that would silently produce a wrong run:

- **Symbol.** A file whose name or ``symbol`` column names a symbol must name the one it is loaded
  for (``ETHUSDT-1m.csv`` given as ``data.paths`` of ``BNBUSDT`` is refused). Names are compared
  without separators and case (``BNB_USDT`` = ``BNBUSDT``); ``X-PERP`` matches any ``X`` +
  stablecoin pair. A funding file must name the traded or the reference symbol.
- **Price level**, only for files that name no symbol: each calendar year's median close must lie
  within a factor :data:`PRICE_BAND_FACTOR` of that year's recorded low-high range of the symbol
  (:data:`YEARLY_RANGES`, USD-stablecoin pairs of BTC, ETH and BNB, 2017-2025, rounded from public
  daily prices). Other symbols and years are not checked: lbml has no reference price for them, and
  a guess would refuse real data. The band is wide on purpose (it absorbs flash wicks and rounding
  in the table); it catches a file of another asset, not a wrong tick.
- **Holes** (``data.max_gap_minutes``, default one day): any symbol's bars may pause, as real
  markets do (the 2021 Binance files have 150- and 284-minute outages), but a hole longer than the
  limit means missing data that the features, the funding and the borrow would bridge silently.
- **Spikes** (``data.max_bar_move``, default 2): a bar's high or low more than this factor away
  from the previous close (a 100x print) is a bad tick, not a market; the real 1-minute files move
  at most 8.5 % (BNBUSDT in the May 2021 sell-off).

Raise the limits in ``[data]`` to accept such data knowingly.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from lbml.data.frames import MarketData
from lbml.errors import DataError

#: A year's median close may lie this factor below the year's low or above its high.
PRICE_BAND_FACTOR = 2.0
_USD_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD")
#: Yearly (low, high) in USD of the bases lbml's scenarios trade, rounded outwards from daily prices.
YEARLY_RANGES: dict[str, dict[int, tuple[float, float]]] = {
    "BTC": {2017: (750, 20_000), 2018: (3_100, 17_300), 2019: (3_300, 14_000), 2020: (3_800, 29_400),
            2021: (28_800, 69_000), 2022: (15_400, 48_200), 2023: (16_400, 45_000), 2024: (38_500, 108_400),
            2025: (74_400, 126_300)},
    "ETH": {2017: (8, 880), 2018: (80, 1_430), 2019: (100, 365), 2020: (90, 760), 2021: (710, 4_900),
            2022: (880, 3_880), 2023: (1_190, 2_450), 2024: (2_100, 4_110), 2025: (1_380, 4_960)},
    "BNB": {2017: (0.09, 25), 2018: (4, 25), 2019: (4.2, 40), 2020: (6.3, 42), 2021: (37, 692),
            2022: (180, 535), 2023: (200, 350), 2024: (290, 795), 2025: (510, 1_370)},
}


def _normal(symbol: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", symbol.upper())


def same_symbol(named: str, expected: str) -> bool:
    """Whether a symbol read from a file (name or column) is the scenario's ``expected`` symbol."""
    upper = named.upper()
    if upper.endswith("-PERP"):
        base = _normal(upper[: -len("-PERP")])
        return any(_normal(expected) == base + quote for quote in _USD_QUOTES)
    return _normal(named) == _normal(expected)


def check_file_symbol(path: object, named: str | None, expected: str, field: str) -> None:
    """Refuse a file that names another symbol than the one it is loaded for."""
    if named is not None and not same_symbol(named, expected):
        raise DataError(
            f"{path}: the file's name or symbol column says {named}, but it is listed in {field} for {expected} "
            "(list it under the right symbol, or fix the symbol)"
        )


def check_price_level(path: object, symbol: str, bars: pd.DataFrame) -> None:
    """Refuse bars whose price level is implausible for ``symbol`` (see the module docstring)."""
    base = next((symbol[: -len(q)] for q in _USD_QUOTES if symbol.endswith(q) and len(symbol) > len(q)), None)
    ranges = YEARLY_RANGES.get(base or "")
    if ranges is None or bars is None or not len(bars):
        return
    medians = bars["close"].groupby(bars.index.year).median()
    for year, median in medians.items():
        if int(year) not in ranges:
            continue
        low, high = ranges[int(year)]
        if not low / PRICE_BAND_FACTOR <= median <= high * PRICE_BAND_FACTOR:
            raise DataError(
                f"{path}: median price {median:.6g} in {year} is not plausible for {symbol} (its {year} range was "
                f"{low:g} to {high:g}): is this another asset's file? Name the file after its symbol to vouch for it"
            )


def check_gaps(symbol: str, bars: pd.DataFrame, bar_minutes: int, max_gap_minutes: int, source: str) -> None:
    """Refuse a hole between consecutive bars longer than ``max_gap_minutes``."""
    if bars is None or len(bars) < 2:
        return
    steps = np.diff(bars.index.asi8)
    worst = int(np.argmax(steps))
    missing_minutes = steps[worst] / 60e9 - bar_minutes
    if missing_minutes > max_gap_minutes:
        before, after = bars.index[worst], bars.index[worst + 1]
        raise DataError(
            f"{source}: {symbol} has no bars from {before} to {after} ({_duration(missing_minutes)} missing), "
            f"longer than data.max_gap_minutes = {max_gap_minutes} (raise it to accept the hole)"
        )


def bar_moves(bars: pd.DataFrame) -> np.ndarray:
    """Per bar, the factor between the highest and lowest of its high, low and the previous close."""
    high = bars["high"].to_numpy(dtype=np.float64)
    low = bars["low"].to_numpy(dtype=np.float64)
    previous = np.r_[bars["open"].to_numpy(dtype=np.float64)[:1], bars["close"].to_numpy(dtype=np.float64)[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(high, previous) / np.minimum(low, previous)


def check_spikes(symbol: str, bars: pd.DataFrame, max_bar_move: float, source: str) -> None:
    """Refuse a bar that moves more than ``max_bar_move`` times away from the previous close."""
    if bars is None or not len(bars):
        return
    moves = bar_moves(bars)
    worst = int(np.nanargmax(moves)) if np.isfinite(moves).any() else 0
    if moves[worst] > max_bar_move:
        raise DataError(
            f"{source}: {symbol} moves {moves[worst]:.3g}x within the bar at {bars.index[worst]} "
            f"(more than data.max_bar_move = {max_bar_move:g}): a bad print? (raise the limit to accept it)"
        )


def check_market(market: MarketData, *, max_gap_minutes: int, max_bar_move: float) -> None:
    """Check every instrument's bars for holes and spikes."""
    for symbol, data in market.instruments.items():
        source = data.source or symbol
        check_gaps(symbol, data.bars, market.bar_minutes, max_gap_minutes, source)
        check_spikes(symbol, data.bars, max_bar_move, source)


def _duration(minutes: float) -> str:
    if minutes >= 2 * 1440:
        return f"{minutes / 1440:.0f} days"
    if minutes >= 120:
        return f"{minutes / 60:.0f} hours"
    return f"{math.ceil(minutes)} minutes"
