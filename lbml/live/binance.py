"""Binance market data through nautilus' own adapter: configuration only (needs the network).

``binance_data_config`` builds and validates the ``BinanceDataClientConfig`` a paper node would use
for public market data (no API key is needed for trades and quotes): spot or USD-M futures, live or
testnet, trades or aggregated trades, instruments limited to the scenario's symbols.

``lbml paper --feed binance`` is not wired into the paper node in this version. What is missing: the
adapter's ticks bypass ``FeedDataClient``, so they are neither journaled (no crash recovery) nor
turned into event-time bars, and Binance's instrument definitions (precisions, fees) would replace
the scenario's. Until then, bridge Binance (or any source) to ``--feed zmq`` in the documented
message format.
"""

from nautilus_trader.adapters.binance import BinanceAccountType, BinanceDataClientConfig
from nautilus_trader.config import InstrumentProviderConfig

from lbml.errors import ConfigError

_ACCOUNT_TYPES = {"spot": BinanceAccountType.SPOT, "usdt_futures": BinanceAccountType.USDT_FUTURES}


def binance_data_config(
    symbols: list[str], *, market: str = "spot", testnet: bool = False, agg_trades: bool = True
) -> BinanceDataClientConfig:
    """Return a validated Binance data-client config for ``symbols`` (e.g. ``["BNBUSDT"]``)."""
    if market not in _ACCOUNT_TYPES:
        raise ConfigError(f"binance market must be one of {', '.join(_ACCOUNT_TYPES)}, got {market!r}")
    if not symbols:
        raise ConfigError("binance feed needs at least one symbol")
    suffix = "-PERP" if market == "usdt_futures" else ""
    ids = []
    for symbol in symbols:
        if not symbol.isalnum() or not symbol.isupper():
            raise ConfigError(f"binance symbol must be upper-case letters and digits, got {symbol!r}")
        ids.append(f"{symbol}{suffix}.BINANCE")
    return BinanceDataClientConfig(
        account_type=_ACCOUNT_TYPES[market],
        testnet=testnet,
        use_agg_trade_ticks=agg_trades,
        instrument_provider=InstrumentProviderConfig(load_ids=frozenset(ids)),
    )


def binance_unavailable_reason() -> str:
    return ("not wired into the paper node in this version (see lbml.live.binance); bridge the exchange "
            "to --feed zmq in the documented message format instead")
