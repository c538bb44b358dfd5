"""nautilus' Rust L2 order book (``nautilus_pyo3``), with the few operations the order-book
importers need (clear, set a level, summarise the best levels).

``nautilus_pyo3`` is imported when the first book is built, so reading other data does not load it.
A v2 port takes the same types from ``nautilus_trader.model``.
"""

import numpy as np


class L2Book:
    """An L2 (price level) book with the given precisions; ``summary`` covers the best ``levels``."""

    def __init__(self, price_precision: int, size_precision: int, levels: int) -> None:
        from nautilus_trader.core import nautilus_pyo3 as n

        self._n = n
        self._book = n.OrderBook(n.InstrumentId.from_str("BOOK.SUMMARY"), n.BookType.L2_MBP)
        self._pp, self._sp = price_precision, size_precision
        self._levels = levels
        self._seq = 0
        self._sides = {True: n.OrderSide.BUY, False: n.OrderSide.SELL}

    def clear(self, ts: int) -> None:
        self._seq += 1
        self._book.clear(self._seq, ts)

    def set_level(self, is_bid: bool, price: float, size: float, ts: int) -> None:
        """Set the size at ``price`` on one side (``size`` 0 removes the level)."""
        n = self._n
        self._seq += 1
        order = n.BookOrder(self._sides[is_bid], n.Price(price, self._pp), n.Quantity(size, self._sp), 0)
        if size > 0:
            self._book.update(order, 0, self._seq, ts)
        else:
            self._book.delete(order, 0, self._seq, ts)

    def summary(self) -> tuple[float, float, float, float, float, float]:
        """(bid depth, ask depth, best bid, its size, best ask, its size); NaN for an empty side."""
        bids, asks = self._book.bids(self._levels), self._book.asks(self._levels)
        bid = (bids[0].price.as_double(), bids[0].size()) if bids else (np.nan, np.nan)
        ask = (asks[0].price.as_double(), asks[0].size()) if asks else (np.nan, np.nan)
        return (
            float(sum(level.size() for level in bids)),
            float(sum(level.size() for level in asks)),
            *bid,
            *ask,
        )
