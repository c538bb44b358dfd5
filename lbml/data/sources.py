"""The data-source contract and the loader that turns a scenario's ``[data]`` into ``MarketData``."""

from pathlib import Path
from typing import ClassVar

from lbml.data.frames import MarketData
from lbml.data.plausibility import check_market
from lbml.plugins import PluginRegistry
from lbml.scenario import DataConfig


class DataSource:
    """Turns a scenario's data section into canonical ``MarketData``."""

    name: ClassVar[str]

    def load(self, config: DataConfig, *, progress: bool = False) -> MarketData:
        """Return the market the scenario describes; raise ``DataError`` on bad input."""
        raise NotImplementedError


def load_market(config: DataConfig, registry: PluginRegistry, *, progress: bool = False) -> MarketData:
    """Load market data through the data-source plugin named by ``config.source``; refuse holes and spikes
    beyond the scenario's limits (``lbml.data.plausibility``)."""
    source = registry.data_source(config.source)()
    market = source.load(config, progress=progress)
    check_market(market, max_gap_minutes=config.max_gap_minutes, max_bar_move=config.max_bar_move)
    return market


def data_paths_exist(paths: tuple[Path, ...]) -> None:
    from lbml.errors import DataError

    for path in paths:
        if not Path(path).exists():
            raise DataError(f"{path}: data file not found")
