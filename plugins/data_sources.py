"""Built-in data sources: the embedded synthetic market and real-data files."""

import logging
from pathlib import Path

import pandas as pd

from lbml.data.frames import InstrumentData, MarketData, bars_from_trades
from lbml.data.importers import ImportedFile, load_file
from lbml.data.sources import DataSource, data_paths_exist
from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.data.validate import validate
from lbml.errors import DataError
from lbml.hookspecs import hookimpl
from lbml.scenario import DataConfig

log = logging.getLogger(__name__)


class SyntheticSource(DataSource):
    """The embedded, seeded synthetic market (trade ticks, quotes, funding)."""

    name = "synthetic"

    def load(self, config: DataConfig, *, progress: bool = False) -> MarketData:
        symbols = (config.reference_symbol, config.symbol) if config.reference_symbol else (config.symbol,)
        market_config = SyntheticMarketConfig(
            days=config.days,
            seed=config.seed,
            symbols=tuple(dict.fromkeys(symbols)),
            edge=config.edge,
            trend_drift=config.trend_drift,
        )
        market = generate_market(market_config, progress=progress)
        if config.bar_minutes != market.bar_minutes:
            instruments = {
                s: InstrumentData(s, bars_from_trades(d.trades, config.bar_minutes), d.trades, d.quotes, d.source)
                for s, d in market.instruments.items()
            }
            market = MarketData(instruments, market.funding, config.bar_minutes)
        return market


class FilesSource(DataSource):
    """Real data files (klines, trades, freqtrade candles, funding), validated on load."""

    name = "files"

    def load(self, config: DataConfig, *, progress: bool = False) -> MarketData:
        instruments = {config.symbol: _load_instrument(config.symbol, config.paths, config.bar_minutes)}
        if config.reference_symbol and config.reference_paths:
            instruments[config.reference_symbol] = _load_instrument(
                config.reference_symbol, config.reference_paths, config.bar_minutes
            )
        funding = {}
        for path in config.funding_paths:
            data_paths_exist((path,))
            imported = load_file(path, kind="funding")
            funding[imported.symbol or config.symbol] = imported.frame.sort_index()
        return MarketData(instruments, funding, config.bar_minutes)


def _load_instrument(symbol: str, paths: tuple[Path, ...], bar_minutes: int) -> InstrumentData:
    data_paths_exist(paths)
    files = [load_file(p, symbol=symbol) for p in paths]
    for f in files:
        validate(f).raise_if_fatal(f.path)
    kinds = {f.kind for f in files}
    bars = _concat([f for f in files if f.kind == "bars"], "bars")
    trades = _concat([f for f in files if f.kind == "trades"], "trades")
    quotes = _concat([f for f in files if f.kind == "quotes"], "quotes")
    if bars is None and trades is None:
        raise DataError(f"{paths[0]}: no bars or trades for {symbol} (found {', '.join(sorted(kinds))})")
    if bars is not None:
        minutes = {f.bar_minutes for f in files if f.kind == "bars"}
        if minutes != {bar_minutes}:
            raise DataError(
                f"{paths[0]}: bars are {sorted(minutes)} minute(s) long but the scenario uses "
                f"data.bar_minutes = {bar_minutes}"
            )
    if trades is not None and bars is None:
        bars = bars_from_trades(trades, bar_minutes)
    source = ", ".join(str(p) for p in paths)
    return InstrumentData(symbol, bars=bars, trades=trades, quotes=quotes, source=source)


def _concat(files: list[ImportedFile], kind: str) -> pd.DataFrame | None:
    if not files:
        return None
    files = sorted(files, key=lambda f: f.frame.index[0])
    frame = pd.concat([f.frame for f in files]) if len(files) > 1 else files[0].frame
    if len(files) > 1:
        dup = frame.index.duplicated()
        if dup.any():
            raise DataError(f"{files[0].path}: files overlap ({int(dup.sum())} duplicate {kind} timestamps)")
    return frame


@hookimpl
def lbml_register_data_sources() -> list[type]:
    return [SyntheticSource, FilesSource]
