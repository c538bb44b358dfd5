"""Market-data file formats, one module per family; :mod:`lbml.data.importers` detects which.

- :mod:`~lbml.data.formats.binance`: data.binance.vision CSV layouts (klines, trades, aggTrades)
  and the headerless six-number OHLCV line.
- :mod:`~lbml.data.formats.tables`: tables with named columns (CSV with a header, parquet,
  feather): candles, Tardis/ccxt/generic trades, quotes, funding.
- :mod:`~lbml.data.formats.freqtrade_json`: freqtrade's JSON candle lists.
- :mod:`~lbml.data.formats.orderbook`: order-book depth (Tardis book snapshots, Binance depth CSV,
  Binance websocket captures).

Every family reads through the shared helpers of :mod:`lbml.data.parsing` and returns a
:class:`~lbml.data.parsing.Parsed`; none imports another family or the importers.
"""
