"""One backtest in its own process, so its peak RSS is its own: ``python -m benchmarks._backtest_worker SPEC``.

``SPEC`` is a JSON file written by ``bench_backtest``: ``{"kind": "ml"|"bare"|"bare_same"|"bare_orders", "workdir": ...,
"mode": "bars"|"ticks", "out": ...}``. The result (timings, counts, peak RSS) is written to ``out``.

Two bare-engine baselines, both nautilus with a no-op strategy subscribed to the traded bars (no lbml
venue module, actor, recorder or order): ``bare`` replays the traded symbol's bars (or trade ticks)
only; ``bare_same`` replays the very events the ML backtest replays (the traded and reference
instruments' bars or ticks, the kline-flow, funding and depth custom data, in the same chunks, through
the same ``replay_streams``), which is what "the bare engine on the same events" means. A third run,
``bare_orders``, adds a bare strategy sending the order commands an ``ml`` run recorded
(``orders_out``) at the same bars: the engine floor with the same orders.
"""

import contextlib
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
from lbml.engine.purge import CachePurger, CachePurgerConfig
from lbml.nautilus.clock import ms_to_ns
from lbml.nautilus.model import (
    Bar, BarType, OrderSide, Price, Quantity, TimeInForce, Venue, bar_type_for, order_type_to_str,
)
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


def run_ml(workdir: Path, compiled: bool, chunk: int, limit_bars: int | None, orders_out: Path | None = None) -> dict:
    with open(orders_out, "w") if orders_out is not None else contextlib.nullcontext() as out:
        if out is not None:
            _record_commands(out)
        return _run_ml(workdir, compiled, chunk, limit_bars)


def _run_ml(workdir: Path, compiled: bool, chunk: int, limit_bars: int | None) -> dict:
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


def _record_commands(out):
    """Write every order command the lbml strategy sends to ``out`` as JSON lines (time, kind, what
    it sends), for ``run_bare_orders``: wraps the strategy base's calls into nautilus for this
    process only. Lines go out as they come, so the record holds no memory in the run."""
    from strategies.leveraged_base import LeveragedPositionStrategy as Base

    def order_fields(order) -> dict:
        return {
            "id": order.client_order_id.value, "type": order_type_to_str(order.order_type),
            "side": "BUY" if order.side == OrderSide.BUY else "SELL", "quantity": str(order.quantity),
            "trigger": str(order.trigger_price) if getattr(order, "trigger_price", None) is not None else None,
            "price": str(order.price) if getattr(order, "price", None) is not None else None,
            "reduce_only": order.is_reduce_only,
        }

    def wrap(name: str, record) -> None:
        original = getattr(Base, name)

        def wrapper(self, *args, **kwargs):
            out.write(json.dumps([self.clock.timestamp_ns(), name, record(*args, **kwargs)]) + "\n")
            return original(self, *args, **kwargs)

        setattr(Base, name, wrapper)

    wrap("submit_order", lambda order, *a, **k: order_fields(order))
    wrap("submit_order_list", lambda orders, *a, **k: [order_fields(o) for o in orders.orders])
    wrap("cancel_all_orders", lambda *a, **k: None)
    wrap("cancel_order", lambda order, *a, **k: order.client_order_id.value)
    wrap("modify_order", lambda order, quantity=None, price=None, trigger_price=None, *a, **k: {
        "id": order.client_order_id.value, "quantity": None if quantity is None else str(quantity),
        "trigger": None if trigger_price is None else str(trigger_price)})


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


def _bare_engine(workdir: Path):
    """(engine, feed, streams): nautilus' BacktestEngine with the ML backtest's venue (MARGIN/NETTING,
    fees, order latency) and instruments, and that backtest's event streams (``plan_feed`` /
    ``feed_streams``); no lbml module, actor or strategy."""
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
        latency_ns=ms_to_ns(scenario.costs.latency_ms),
        bar_execution=not feed.tick_mode,
    )
    for instrument in feed.instruments.values():
        engine.add_instrument(instrument)
    return engine, feed, feed_streams(feed, scenario, market, split)


def run_bare_same(workdir: Path, chunk: int) -> dict:
    """nautilus' BacktestEngine on the ML backtest's own events (``plan_feed``/``feed_streams``),
    MARGIN/NETTING venue with both instruments, no-op strategy on the traded bars."""
    engine, feed, streams = _bare_engine(workdir)
    strategy = _NoOp(_NoOpConfig(bar_type=feed.bar_type))
    engine.add_strategy(strategy)
    replay = replay_streams(engine, streams, chunk)
    engine.dispose()
    return {"run_seconds": replay.run_seconds, "n_events": replay.n_events, "n_bars": strategy.n_bars}


_SIDES = {"BUY": OrderSide.BUY, "SELL": OrderSide.SELL}


class _ReplayConfig(StrategyConfig, frozen=True):
    bar_type: BarType


class _ReplayOrders(Strategy):
    """Sends, at each traded bar, the order commands the lbml strategy sent at that time (recorded by
    ``_record_commands``): the same brackets, closes, liquidation stops, modifies and cancels, built
    with the engine's own order factory, and nothing else."""

    def __init__(self, config: _ReplayConfig, commands: list) -> None:
        super().__init__(config)
        self.by_ts: dict[int, list] = {}
        for ts, name, payload in commands:
            self.by_ts.setdefault(ts, []).append((name, payload))
        self.instrument_id = config.bar_type.instrument_id
        self.orders: dict = {}  # recorded client order id -> this run's order
        self.n_bars = 0
        self.n_commands = 0
        self.n_fills = 0
        self.command_bar_ns: list[int] = []  # time spent sending each bar's commands (bars with any)

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)

    def on_order_filled(self, event) -> None:
        self.n_fills += 1

    def on_bar(self, bar: Bar) -> None:
        self.n_bars += 1
        commands = self.by_ts.pop(bar.ts_init, None)
        if commands:
            started = time.perf_counter_ns()
            self._send(commands)
            self.command_bar_ns.append(time.perf_counter_ns() - started)

    def _send(self, commands: list) -> None:
        for name, payload in commands:
            self.n_commands += 1
            if name == "submit_order":
                self.submit_order(self._order(payload))
            elif name == "submit_order_list":
                entry, stop, take = payload
                bracket = self.order_factory.bracket(
                    instrument_id=self.instrument_id, order_side=_SIDES[entry["side"]],
                    quantity=Quantity.from_str(entry["quantity"]), sl_trigger_price=Price.from_str(stop["trigger"]),
                    tp_price=Price.from_str(take["price"]), time_in_force=TimeInForce.GTC,
                )
                for recorded, order in zip(payload, bracket.orders):
                    self.orders[recorded["id"]] = order
                self.submit_order_list(bracket)
            elif name == "cancel_all_orders":
                self.cancel_all_orders(self.instrument_id)
            else:
                order = self.orders.get(payload if name == "cancel_order" else payload["id"])
                if order is None or not order.is_open:
                    continue
                if name == "cancel_order":
                    self.cancel_order(order)
                else:
                    self.modify_order(
                        order,
                        quantity=None if payload["quantity"] is None else Quantity.from_str(payload["quantity"]),
                        trigger_price=None if payload["trigger"] is None else Price.from_str(payload["trigger"]),
                    )

    def _order(self, fields: dict):
        kwargs = dict(instrument_id=self.instrument_id, order_side=_SIDES[fields["side"]],
                      quantity=Quantity.from_str(fields["quantity"]), reduce_only=fields["reduce_only"],
                      time_in_force=TimeInForce.GTC)
        if fields["type"] == "STOP_MARKET":
            order = self.order_factory.stop_market(trigger_price=Price.from_str(fields["trigger"]), **kwargs)
        else:
            order = self.order_factory.market(**kwargs)
        self.orders[fields["id"]] = order
        return order


def run_bare_orders(workdir: Path, chunk: int, commands_path: Path) -> dict:
    """``run_bare_same`` with the lbml run's order commands replayed by a bare strategy
    (``_ReplayOrders``): what nautilus alone spends on the same events and the same orders."""
    engine, feed, streams = _bare_engine(workdir)
    commands = [json.loads(line) for line in commands_path.read_text().splitlines()]
    strategy = _ReplayOrders(_ReplayConfig(bar_type=feed.bar_type), commands)
    engine.add_strategy(strategy)
    purger = CachePurger(CachePurgerConfig(component_id="CachePurger", bar_type=feed.bar_type))
    engine.add_actor(purger)  # as in the lbml run: without it the cost per fill grows with the run
    replay = replay_streams(engine, streams, chunk, purger)
    engine.dispose()
    return {"run_seconds": replay.run_seconds, "n_events": replay.n_events, "n_bars": strategy.n_bars,
            "n_commands": strategy.n_commands, "n_recorded": len(commands), "n_fills": strategy.n_fills,
            "command_bars": len(strategy.command_bar_ns),
            "command_us_p50": float(np.percentile(strategy.command_bar_ns, 50)) / 1e3 if strategy.command_bar_ns else None,
            "command_us_p99": float(np.percentile(strategy.command_bar_ns, 99)) / 1e3 if strategy.command_bar_ns else None,
            # The per-bar p99 over every bar of this run (bars without commands spend 0 sending them):
            # what nautilus alone adds to lbml's in-engine per-bar p99.
            "per_bar_command_us_p99": float(np.percentile(
                np.concatenate([strategy.command_bar_ns, np.zeros(max(0, strategy.n_bars - len(strategy.command_bar_ns)))]),
                99)) / 1e3}


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
        orders_out = Path(spec["orders_out"]) if spec.get("orders_out") else None
        result = run_ml(workdir, spec.get("compiled", True), spec.get("chunk", 250_000), spec.get("limit_bars"), orders_out)
    elif spec["kind"] == "bare_orders":
        result = run_bare_orders(workdir, spec.get("chunk", 250_000), Path(spec["orders"]))
    elif spec["kind"] == "bare_same":
        result = run_bare_same(workdir, spec.get("chunk", 250_000))
    else:
        result = run_bare(workdir)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
