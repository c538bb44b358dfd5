"""The work behind ``lbml features check|compute|docs``: one function per command."""

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lbml.data.frames import MarketData
from lbml.data.sources import load_market
from lbml.errors import ConfigError, DataError
from lbml.features.base import FeatureInput
from lbml.features.check import CheckReport, FeatureInputs, check_features
from lbml.features.market import market_features, reference_bars_for
from lbml.features.pipeline import FeaturePipeline, available_inputs, build_pipeline
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario
from lbml.split import compute_split

log = logging.getLogger(__name__)

METADATA_KEY = b"lbml.features"


@dataclass(frozen=True)
class ScenarioFeatures:
    """A scenario's market and the feature plugins its data can feed."""

    scenario: Scenario
    market: MarketData
    specs: tuple[Any, ...]  # FeaturePluginConfig of the usable plugins
    unavailable: tuple[tuple[str, str], ...]  # (plugin, reason)
    fit_end: pd.Timestamp

    def pipeline(self, registry: PluginRegistry) -> FeaturePipeline:
        return build_pipeline(registry, self.specs)


def scenario_features(scenario: Scenario, registry: PluginRegistry, *, progress: bool = False) -> ScenarioFeatures:
    """Load the scenario's data and split its feature plugins into usable and unavailable ones."""
    cfg = scenario.data
    market = load_market(cfg, registry, progress=progress)
    if cfg.symbol not in market:
        raise DataError(f"data has no instrument {cfg.symbol} (found {', '.join(market.instruments)})")
    available = available_inputs(market, cfg.symbol, cfg.reference_symbol)
    usable, unavailable = [], []
    for spec in scenario.features.plugins:
        plugin = registry.feature(spec.plugin)(**spec.params)
        missing = plugin.inputs - available
        if missing:
            reason = "data has no " + ", ".join(sorted(m.value for m in missing))
            log.warning("feature plugin %s declared unavailable: %s", plugin.name, reason)
            unavailable.append((plugin.name, reason))
        else:
            usable.append(spec)
    if not usable:
        raise ConfigError("the scenario enables no feature plugin this data can feed")
    split = compute_split(market[cfg.symbol].bars.index, scenario)
    return ScenarioFeatures(scenario, market, tuple(usable), tuple(unavailable), split.train_end)


def feature_inputs(sf: ScenarioFeatures) -> FeatureInputs:
    cfg = sf.scenario.data
    data = sf.market[cfg.symbol]
    funding = sf.market.funding.get(cfg.symbol)
    return FeatureInputs(data, data.bars, reference_bars_for(sf.market, cfg.reference_symbol), funding)


def run_check(
    scenario: Scenario, registry: PluginRegistry, *, n_cuts: int, seed: int, progress: bool = False
) -> CheckReport:
    """``lbml features check``: causality, parity and warm-up of every usable feature."""
    sf = scenario_features(scenario, registry, progress=progress)
    report = check_features(lambda: sf.pipeline(registry), feature_inputs(sf), sf.fit_end, n_cuts=n_cuts, seed=seed)
    report.unavailable = list(sf.unavailable)
    return report


def run_compute(scenario: Scenario, registry: PluginRegistry, out: Path, *, progress: bool = False) -> dict[str, Any]:
    """``lbml features compute``: fit on the training window, replay all bars, write parquet + schema."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out: directory {out.parent} does not exist")
    sf = scenario_features(scenario, registry, progress=progress)
    cfg = scenario.data
    pipeline = sf.pipeline(registry)
    pipeline.fit(sf.market[cfg.symbol].bars.loc[: sf.fit_end])
    features = market_features(pipeline, sf.market, cfg.symbol, cfg.reference_symbol)
    schema = pipeline.schema()
    meta = {
        "schema": schema.to_dict(),
        "fitted_state": pipeline.fitted_state(),
        "fit_window_end": sf.fit_end.isoformat(),
        "warmup_bars": pipeline.warmup_bars,
        "unavailable": [{"plugin": p, "reason": r} for p, r in sf.unavailable],
        "scenario": scenario.name,
        "scenario_hash": scenario.content_hash(),
        "symbol": cfg.symbol,
        "reference_symbol": cfg.reference_symbol if FeatureInput.REFERENCE in pipeline.inputs else None,
        "source": sf.market[cfg.symbol].source,
    }
    write_feature_parquet(features, meta, out)
    return meta


def write_feature_parquet(features: pd.DataFrame, meta: dict[str, Any], out: Path) -> None:
    """Write atomically: a reader never sees a half-written file under ``out``."""
    table = pa.Table.from_pandas(features, preserve_index=True)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(meta, sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_feature_metadata(path: Path) -> dict[str, Any]:
    """Return the schema metadata stored by ``write_feature_parquet``."""
    metadata = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in metadata:
        raise DataError(f"{path}: not an lbml feature file (no {METADATA_KEY.decode()} metadata)")
    return json.loads(metadata[METADATA_KEY])
