"""Built-in data sources: the embedded synthetic market and real-data files."""

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from lbml.data.frames import InstrumentData, MarketData, bars_from_trades
from lbml.data.importers import ImportedFile, load_file
from lbml.data.importers import load_depth
from lbml.data.plausibility import check_file_symbol, check_price_level, same_symbol
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
    """Real data files (klines, trades, freqtrade candles, funding, order-book depth), validated on load."""

    name = "files"

    def load(self, config: DataConfig, *, progress: bool = False) -> MarketData:
        instruments = {config.symbol: _load_instrument(config.symbol, config.paths, config.bar_minutes, "data.paths")}
        if config.depth_paths:
            instruments[config.symbol] = _with_depth(instruments[config.symbol], config.depth_paths)
        if config.reference_symbol and config.reference_paths:
            instruments[config.reference_symbol] = _load_instrument(
                config.reference_symbol, config.reference_paths, config.bar_minutes, "data.reference_paths"
            )
        funding = {}
        for path in config.funding_paths:
            data_paths_exist((path,))
            imported = load_file(path, kind="funding")
            symbols = tuple(filter(None, (config.symbol, config.reference_symbol)))
            if imported.symbol is not None and not any(same_symbol(imported.symbol, s) for s in symbols):
                raise DataError(f"{path}: the file's name or symbol column says {imported.symbol}, but data.funding_paths "
                                f"are for {' or '.join(symbols)}")
            owner = next((s for s in symbols if imported.symbol and same_symbol(imported.symbol, s)), config.symbol)
            funding[owner] = imported.frame.sort_index()
        return MarketData(instruments, funding, config.bar_minutes)


def _load_instrument(symbol: str, paths: tuple[Path, ...], bar_minutes: int, field: str) -> InstrumentData:
    data_paths_exist(paths)
    loaded = [load_file(p) for p in paths]
    for f in loaded:
        check_file_symbol(f.path, f.symbol, symbol, field)  # the symbol the file's name or column gives
        validate(f).raise_if_fatal(f.path)
    loaded_names, loaded = loaded, [replace(f, symbol=symbol) for f in loaded]
    files = [part for f in loaded for part in _streams(f)]  # a capture holds trades and quotes too
    kinds = {f.kind for f in files}
    bars = _concat([f for f in files if f.kind == "bars"], "bars")
    trades = _concat([f for f in files if f.kind == "trades"], "trades")
    quotes = _concat([f for f in files if f.kind == "quotes"], "quotes")
    depth = _concat([f for f in files if f.kind == "depth"], "depth")
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
    if all(f.symbol is None for f in loaded_names):
        check_price_level(paths[0], symbol, bars)
    source = ", ".join(str(p) for p in paths)
    return InstrumentData(symbol, bars=bars, trades=trades, quotes=quotes, source=source, depth=depth)


def _streams(imported: ImportedFile) -> list[ImportedFile]:
    """The file itself plus one pseudo-file per extra stream it holds (validated like files)."""
    parts = [imported]
    for kind, frame in imported.streams.items():
        if not len(frame):  # e.g. no two-sided quote in a one-sided book
            continue
        part = replace(imported, kind=kind, frame=frame, streams={})
        validate(part, source=f"{imported.path} [{kind}]").raise_if_fatal()
        parts.append(part)
    return parts


def _with_depth(data: InstrumentData, depth_paths: tuple[Path, ...]) -> InstrumentData:
    """Attach ``data.depth_paths`` to the traded symbol: symbol checked, span compared to the bars'."""
    data_paths_exist(depth_paths)
    files = load_depth(depth_paths)
    for f in files:
        if f.symbol is not None and f.symbol != data.symbol:
            raise DataError(f"{f.path}: depth file is for {f.symbol} but data.symbol is {data.symbol}")
        validate(f).raise_if_fatal(f.path)
    files.sort(key=lambda f: f.frame.index[0])
    for before, after in zip(files, files[1:]):
        if after.frame.index[0] <= before.frame.index[-1]:
            raise DataError(f"{after.path}: depth overlaps {before.path} (both cover {after.frame.index[0]})")
    depth = pd.concat([f.frame for f in files]) if len(files) > 1 else files[0].frame
    quotes = data.quotes
    if quotes is None:  # top of book from the order-book files when no quote file was given
        quotes = _concat([p for f in files for p in _streams(f)[1:] if p.kind == "quotes"], "quotes")
    start, end = data.span() if data.bars is None else (data.bars.index[0], data.bars.index[-1])
    first, last = depth.index[0], depth.index[-1]
    if first > end or last < start:
        raise DataError(
            f"{depth_paths[0]}: depth covers {first} to {last}, outside the bars' span {start} to {end}"
        )
    if first > start or last < end:
        log.warning(
            "%s: depth covers %s to %s but the bars span %s to %s; bars outside it get no depth "
            "features (NaN)",
            depth_paths[0], first, last, start, end,
        )
    return replace(data, depth=depth, quotes=quotes, source=f"{data.source}; depth: {', '.join(map(str, depth_paths))}")


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
