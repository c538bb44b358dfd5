"""Differences between the nautilus versions lbml runs on (1.221 today; 1.222+ where noted)."""

import gc

from nautilus_trader.adapters.binance.common.urls import get_ws_base_url
from nautilus_trader.model.orders import OrderList


def binance_ws_base_url(account_type, testnet: bool) -> str:
    """Binance's websocket base URL on nautilus 1.221 (``is_testnet`` flag) and on 1.222+, whose
    second argument is a ``BinanceEnvironment`` (a bool there silently means the live network)."""
    try:
        from nautilus_trader.adapters.binance.common.enums import BinanceEnvironment
    except ImportError:  # nautilus 1.221
        return get_ws_base_url(account_type, testnet, is_us=False)
    environment = BinanceEnvironment.TESTNET if testnet else BinanceEnvironment.LIVE
    return get_ws_base_url(account_type, environment, is_us=False)


def purge_order_lists(cache) -> int:
    """Drop the order lists none of whose orders is left in ``cache``; return how many.

    nautilus 1.221's ``Cache.purge_order`` leaves the order's ``OrderList`` in the cache's order-list
    index, and no method removes one: every bracket ever submitted stays in memory with its three
    orders and all their events. On the default scenario that was about half of the ~1 KB a backtest
    bar added to the process (a round trip every ~20 bars): ~500 MB over a year of 1-minute bars.
    The index
    is a private ``cdef dict``, reached here through the garbage collector's view of the cache (the
    only dict there whose values are ``OrderList``s). Call it after ``purge_closed_orders``.
    """
    index = _order_list_index(cache)
    if not index:
        return 0
    gone = [list_id for list_id, order_list in index.items()
            if all(cache.order(order.client_order_id) is None for order in order_list.orders)]
    for list_id in gone:
        del index[list_id]
    return len(gone)


def _order_list_index(cache) -> dict | None:
    for ref in gc.get_referents(cache):
        if type(ref) is dict and ref and isinstance(next(iter(ref.values())), OrderList):
            return ref
    return None
