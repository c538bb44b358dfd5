"""Differences between the nautilus versions lbml runs on (1.221 today; 1.222+ where noted)."""

from nautilus_trader.adapters.binance.common.urls import get_ws_base_url


def binance_ws_base_url(account_type, testnet: bool) -> str:
    """Binance's websocket base URL on nautilus 1.221 (``is_testnet`` flag) and on 1.222+, whose
    second argument is a ``BinanceEnvironment`` (a bool there silently means the live network)."""
    try:
        from nautilus_trader.adapters.binance.common.enums import BinanceEnvironment
    except ImportError:  # nautilus 1.221
        return get_ws_base_url(account_type, testnet, is_us=False)
    environment = BinanceEnvironment.TESTNET if testnet else BinanceEnvironment.LIVE
    return get_ws_base_url(account_type, environment, is_us=False)
