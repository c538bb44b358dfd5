"""Time bars from trade ticks, by event time (not wall-clock time).

Nautilus' live INTERNAL time bars close on wall-clock timers, which cannot follow a replay at
``--speed`` or a feed with its own timestamps. This aggregator uses the events' own times with the
same convention as ``lbml.data.frames.bars_from_trades`` and the backtest's INTERNAL bars:
right-closed intervals labelled by their close, no bar for an interval without trades. A bar is
complete when an event (of any symbol) later than its close arrives, or at ``flush``. A bar carries
its taker-buy volume (the size of buyer-aggressor trades), as ``bars_from_trades`` computes it.
"""

from dataclasses import dataclass


@dataclass
class _Open:
    close_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    taker_buy: float


class TickBarAggregator:
    """Aggregate trades of several symbols into ``period_ns`` bars; emit in symbol order."""

    def __init__(self, symbols: list[str], period_ns: int) -> None:
        self.symbols = list(symbols)
        self.period_ns = period_ns
        self._open: dict[str, _Open] = {}

    def due(self, ts: int) -> list[tuple[str, int, float, float, float, float, float, float]]:
        """Return (and forget) every open bar whose close is before ``ts``, oldest first, as
        ``(symbol, close_ts, open, high, low, close, volume, taker_buy_volume)``."""
        ready = [(b.close_ts, self.symbols.index(s), s) for s, b in self._open.items() if b.close_ts < ts]
        out = []
        for _, _, symbol in sorted(ready):
            b = self._open.pop(symbol)
            out.append((symbol, b.close_ts, b.open, b.high, b.low, b.close, b.volume, b.taker_buy))
        return out

    def flush(self) -> list[tuple[str, int, float, float, float, float, float, float]]:
        return self.due(2**63 - 1)

    def on_trade(self, symbol: str, ts: int, price: float, size: float, side: float = 0.0) -> None:
        close_ts = -(-ts // self.period_ns) * self.period_ns
        bought = size if side > 0 else 0.0
        bar = self._open.get(symbol)
        if bar is None:
            self._open[symbol] = _Open(close_ts, price, price, price, price, size, bought)
            return
        if close_ts != bar.close_ts:  # call due() before each event; this only guards misuse
            raise ValueError(f"{symbol}: trade at {ts} outside the open bar closing at {bar.close_ts}")
        bar.high = max(bar.high, price)
        bar.low = min(bar.low, price)
        bar.close = price
        bar.volume += size
        bar.taker_buy += bought
