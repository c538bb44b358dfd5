"""The pieces of nautilus' Binance adapter the ``--feed binance`` source uses: the account types,
the msgspec schemas of the public market-data messages, the symbol format and the websocket client.

None of these is in v2's Python API (its Binance adapter is Rust): a v2 port replaces this module by
lbml's own message schemas and websocket client (docs/ENGINE.md §8).
"""

from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceAggregatedTradeMsg,
    BinanceDataMsgWrapper,
    BinanceOrderBookMsg,
    BinanceQuoteMsg,
)
from nautilus_trader.adapters.binance.common.symbol import BinanceSymbol
from nautilus_trader.adapters.binance.futures.schemas.market import BinanceFuturesMarkPriceMsg, BinanceFuturesTradeMsg
from nautilus_trader.adapters.binance.spot.schemas.market import (
    BinanceSpotOrderBookPartialDepthMsg,
    BinanceSpotTradeMsg,
)
from nautilus_trader.adapters.binance.websocket.client import BinanceWebSocketClient
from nautilus_trader.core.nautilus_pyo3 import WebSocketClientError

from lbml.nautilus.compat import binance_ws_base_url

__all__ = ["BinanceAccountType", "BinanceAggregatedTradeMsg", "BinanceDataMsgWrapper", "BinanceFuturesMarkPriceMsg",
           "BinanceFuturesTradeMsg", "BinanceOrderBookMsg", "BinanceQuoteMsg", "BinanceSpotOrderBookPartialDepthMsg",
           "BinanceSpotTradeMsg", "BinanceSymbol", "BinanceWebSocketClient", "WebSocketClientError",
           "binance_ws_base_url"]
