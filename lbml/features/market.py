"""Feature matrices for a scenario's market: the batch replay with every input the engine feeds."""

from dataclasses import replace

import pandas as pd

from lbml.data.frames import MarketData
from lbml.features.pipeline import FeaturePipeline, compute_features


def reference_bars_for(market: MarketData, reference: str | None) -> pd.DataFrame | None:
    """Bars of the reference instrument, or None when the market lacks it."""
    return market[reference].bars if reference is not None and reference in market else None


def market_features(
    pipeline: FeaturePipeline,
    market: MarketData,
    symbol: str,
    reference: str | None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Replay ``symbol``'s trades, quotes, reference bars and funding (up to ``end``) through ``pipeline``.

    This is the batch twin of a backtest: the same events, in the same order, reach the same
    plugin objects. Fitted state must already be loaded (or ``pipeline.fit`` called).
    """
    data = market[symbol]
    ref = reference_bars_for(market, reference)
    funding = market.funding.get(symbol)
    bars = data.bars
    if end is not None:
        bars = bars.loc[:end]
        data = replace(
            data,
            trades=data.trades.loc[:end] if data.trades is not None else None,
            quotes=data.quotes.loc[:end] if data.quotes is not None else None,
            depth=data.depth.loc[:end] if data.depth is not None else None,
        )
        ref = ref.loc[:end] if ref is not None else None
        funding = funding.loc[:end] if funding is not None else None
    return compute_features(pipeline, data, bars, ref, funding)
