"""Canonical in-memory market data, shared by every importer, the generator and the engine.

Conventions (all importers produce exactly these):

- Every frame has a tz-aware UTC ``DatetimeIndex`` named ``ts`` with nanosecond resolution,
  strictly increasing for bars, non-decreasing for ticks.
- **Bars** are indexed by their *close* time (``ts`` = open time + bar length), the time at which
  the bar is known. Columns: ``open, high, low, close, volume`` (float64, base-asset volume) and
  optionally ``taker_buy_volume`` (base volume bought by aggressive buyers, when the source has it).
- **Trades**: ``price, size`` (float64) and ``side`` (int8: +1 buyer was the aggressor, -1 seller).
- **Quotes** (top of book): ``bid, ask, bid_size, ask_size`` (float64).
- **Funding**: ``rate`` (float64, per settlement), indexed by settlement time.
- **Depth** (optional, a 5-level book summary): ``bid_depth, ask_depth`` (float64, base-asset size
  resting on the best five price levels of each side), indexed by snapshot time.
"""

from dataclasses import dataclass, field

import pandas as pd

BAR_COLUMNS = ("open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("price", "size", "side")
QUOTE_COLUMNS = ("bid", "ask", "bid_size", "ask_size")
FUNDING_COLUMNS = ("rate",)
DEPTH_COLUMNS = ("bid_depth", "ask_depth")


@dataclass(frozen=True)
class InstrumentData:
    """All data known for one symbol. At least one of ``bars`` or ``trades`` is present."""

    symbol: str
    bars: pd.DataFrame | None = None
    trades: pd.DataFrame | None = None
    quotes: pd.DataFrame | None = None
    source: str = ""  # human-readable origin (file paths or "synthetic seed=7")
    depth: pd.DataFrame | None = None  # 5-level book summary snapshots

    @property
    def has_ticks(self) -> bool:
        return self.trades is not None and len(self.trades) > 0

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        frame = self.trades if self.has_ticks else self.bars
        assert frame is not None
        return frame.index[0], frame.index[-1]


@dataclass(frozen=True)
class MarketData:
    """Data for the traded symbol, optional reference symbols, and funding series."""

    instruments: dict[str, InstrumentData]
    funding: dict[str, pd.DataFrame] = field(default_factory=dict)
    bar_minutes: int = 1

    def __getitem__(self, symbol: str) -> InstrumentData:
        return self.instruments[symbol]

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.instruments


def empty_index() -> pd.DatetimeIndex:
    return pd.DatetimeIndex([], tz="UTC", name="ts", dtype="datetime64[ns, UTC]")


def bars_from_trades(trades: pd.DataFrame, bar_minutes: int = 1) -> pd.DataFrame:
    """Aggregate trades into time bars the way nautilus' INTERNAL time bars do.

    Right-closed intervals labelled by their close: a trade at exactly ``t`` belongs to the bar that
    closes at ``t``. Minutes with no trade produce no bar. Used for training features and warm-up;
    the backtest engine builds its own bars from the ticks, and a test checks the two agree.
    """
    rule = f"{bar_minutes}min"
    grouped = trades.groupby(
        pd.Grouper(freq=rule, closed="right", label="right")
    )
    price = grouped["price"]
    bars = pd.DataFrame(
        {
            "open": price.first(),
            "high": price.max(),
            "low": price.min(),
            "close": price.last(),
            "volume": grouped["size"].sum(),
        }
    )
    buy_size = trades["size"].where(trades["side"] > 0, 0.0)
    bars["taker_buy_volume"] = buy_size.groupby(
        pd.Grouper(freq=rule, closed="right", label="right")
    ).sum()
    bars = bars.dropna(subset=["close"])
    bars.index.name = "ts"
    return bars
