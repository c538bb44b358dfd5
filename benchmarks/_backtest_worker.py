"""One backtest in its own process, so its peak RSS is its own: ``python -m benchmarks._backtest_worker SPEC``.

``SPEC`` is a JSON file written by ``bench_backtest``: ``{"kind": "ml"|"bare"|"bare_same", "workdir": ...,
"mode": "bars"|"ticks", "out": ...}``. The result (timings, counts, peak RSS) is written to ``out``.

Two bare-engine baselines, both nautilus with a no-op strategy subscribed to the traded bars (no lbml
venue module, actor, recorder or order): ``bare`` replays the traded symbol's bars (or trade ticks)
only; ``bare_same`` replays the very events the ML backtest replays (the traded and reference
instruments' bars or ticks, the kline-flow, funding and depth custom data, in the same chunks, through
the same ``replay_streams``), which is what "the bare engine on the same events" means.
"""

import dataclasses
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lbml.data.frames import InstrumentData, MarketData
from lbml.engine.backtest import feed_streams, instrument_for, plan_feed, replay_streams, run_backtest
from lbml.engine.convert import to_bars, to_trade_ticks
from lbml.models.artifact import load_artifact
from lbml.models.compiled import CompiledModel, accelerate
from lbml.research.training import scenario_pipeline
from lbml.nautilus.backtest import add_margin_venue, new_backtest_engine
from lbml.nautilus.model import Bar, BarType, Venue, bar_type_for
from lbml.nautilus.trading import Strategy, StrategyConfig
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.split import compute_split
from lbml.workflows.prepare import Prepared, warm_up


def read_market(workdir: Path) -> MarketData:
    """Read the market frames ``bench_backtest`` wrote (bars, and trades in tick mode)."""
    instruments = {}
    for bars_file in sorted(workdir.glob("*.bars.parquet")):
        symbol = bars_file.name.split(".")[0]
        trades_file = workdir / f"{symbol}.trades.parquet"
        trades = pd.read_parquet(trades_file) if trades_file.is_file() else None
        instruments[symbol] = InstrumentData(symbol, bars=pd.read_parquet(bars_file), trades=trades, source="bench")
    funding = {f.name.split(".")[0]: pd.read_parquet(f) for f in workdir.glob("*.funding.parquet")}
    return MarketData(instruments=instruments, funding=funding, bar_minutes=1)


def run_ml(workdir: Path, compiled: bool, chunk: int, limit_bars: int | None) -> dict:
    scenario = load_scenario(workdir / "scenario.toml")
    market = read_market(workdir)
    registry = load_registry()
    bars_index = market[scenario.data.symbol].bars.index
    split = compute_split(bars_index, scenario)
    if limit_bars is not None:  # backtest only the first ``limit_bars`` bars of the window
        last = min(len(bars_index) - 1, bars_index.get_loc(split.test_start) + limit_bars)
        split = dataclasses.replace(split, test_end=bars_index[last])
    prepared = Prepared(scenario, market, split)
    pipeline = scenario_pipeline(scenario, market, registry)
    artifact = load_artifact(workdir / "model", registry, expected_schema=pipeline.schema())
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    model = accelerate(artifact.model) if compiled else artifact.model
    result = run_backtest(
        scenario, market, prepared.split, pipeline, model,
        chunk_events=chunk, compiled_inference=compiled,
    )
    lat = np.asarray(result.latencies_ns, dtype=np.float64) / 1e3
    return {
        "run_seconds": result.run_seconds,
        "n_events": result.n_events,
        "n_bars": result.n_bars,
        "n_predictions": result.n_predictions,
        "n_fills": len(result.record.fills),
        "n_trades": len(result.record.positions),
        "final_balance": result.final_balance,
        "chunk_seconds": result.chunk_seconds,
        "latency_us_p50": float(np.percentile(lat, 50)) if len(lat) else None,
        "latency_us_p99": float(np.percentile(lat, 99)) if len(lat) else None,
        "compiled_trees": isinstance(getattr(model, "base", model), CompiledModel),  # calibration wraps the trees
    }


class _NoOpConfig(StrategyConfig, frozen=True):
    bar_type: BarType


class _NoOp(Strategy):
    """Subscribes to the bars and does nothing with them: the engine's floor."""

    def __init__(self, config: _NoOpConfig) -> None:
        super().__init__(config)
        self.n_bars = 0

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        self.n_bars += 1


def run_bare(workdir: Path) -> dict:
    """nautilus' BacktestEngine on the same events, MARGIN/NETTING venue, no-op strategy."""
    scenario = load_scenario(workdir / "scenario.toml")
    market = read_market(workdir)
    data = market[scenario.data.symbol]
    split = compute_split(data.bars.index, scenario)
    instrument = instrument_for(data, scenario.data.venue, scenario, split.test_start)
    tick_mode = data.has_ticks
    bar_type = bar_type_for(instrument.id, 1, internal=tick_mode)
    if tick_mode:
        frame = data.trades.loc[(data.trades.index > split.test_start) & (data.trades.index <= split.test_end)]
        events = to_trade_ticks(frame, instrument)
    else:
        frame = data.bars.loc[(data.bars.index > split.test_start) & (data.bars.index <= split.test_end)]
        events = to_bars(frame, bar_type, instrument)
    engine = new_backtest_engine(log_level="ERROR")
    add_margin_venue(
        engine,
        venue=Venue(scenario.data.venue),
        base_currency=instrument.quote_currency,
        starting_balance=scenario.venue.starting_balance,
        leverage=scenario.strategy.max_leverage,
        bar_execution=not tick_mode,
    )
    engine.add_instrument(instrument)
    engine.add_data(events, validate=False, sort=True)
    strategy = _NoOp(_NoOpConfig(bar_type=bar_type))
    engine.add_strategy(strategy)
    n_events = len(events)
    del events
    started = time.perf_counter()
    engine.run()
    run_seconds = time.perf_counter() - started
    engine.dispose()
    return {"run_seconds": run_seconds, "n_events": n_events, "n_bars": strategy.n_bars}


def run_bare_same(workdir: Path, chunk: int) -> dict:
    """nautilus' BacktestEngine on the ML backtest's own events (``plan_feed``/``feed_streams``),
    MARGIN/NETTING venue with both instruments, no-op strategy on the traded bars."""
    scenario = load_scenario(workdir / "scenario.toml")
    market = read_market(workdir)
    split = compute_split(market[scenario.data.symbol].bars.index, scenario)
    pipeline = scenario_pipeline(scenario, market, load_registry())
    feed = plan_feed(scenario, market, split, pipeline.inputs)
    engine = new_backtest_engine(log_level="ERROR")
    add_margin_venue(
        engine,
        venue=Venue(scenario.data.venue),
        base_currency=feed.instrument.quote_currency,
        starting_balance=scenario.venue.starting_balance,
        leverage=scenario.strategy.max_leverage,
        bar_execution=not feed.tick_mode,
    )
    for instrument in feed.instruments.values():
        engine.add_instrument(instrument)
    strategy = _NoOp(_NoOpConfig(bar_type=feed.bar_type))
    engine.add_strategy(strategy)
    replay = replay_streams(engine, feed_streams(feed, scenario, market, split), chunk)
    engine.dispose()
    return {"run_seconds": replay.run_seconds, "n_events": replay.n_events, "n_bars": strategy.n_bars}


def peak_rss_mb() -> float:
    """Peak RSS of this process image. ``ru_maxrss`` would also count the parent's memory at
    ``exec`` time (Linux carries it over), so read the kernel's high-water mark of this image."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    workdir = Path(spec["workdir"])
    if spec["kind"] == "ml":
        result = run_ml(workdir, spec.get("compiled", True), spec.get("chunk", 250_000), spec.get("limit_bars"))
    elif spec["kind"] == "bare_same":
        result = run_bare_same(workdir, spec.get("chunk", 250_000))
    else:
        result = run_bare(workdir)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
