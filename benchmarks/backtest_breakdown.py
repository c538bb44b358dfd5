"""Where a backtest bar's time goes: ``python -m benchmarks.backtest_breakdown [BARS] [TRAIN_BARS]``.

Builds the backtest benchmark's bar market (``bench_backtest``: default scenario, embedded
generator) with ``BARS`` test bars, runs the ML backtest once with every lbml component method on
the per-bar path wrapped in an exclusive wall-clock timer, and prints each part's share of the
replay and its microseconds per traded bar as JSON, beside the bare engine's time per traded bar on
the same events (``_backtest_worker.run_bare_same``). "nautilus (rest)" is the replay minus every
wrapped part: the data engine, message-bus dispatch, the instruments' bar matching, portfolio,
cache and event conversion. Each wrapped call adds about a microsecond, which inflates the parts
called many times per bar; read shares, on a quiet machine. Not a ``bench_*`` module: it measures a
composition, not a figure with a baseline.
"""

import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

_clock = time.perf_counter_ns


class _Timers:
    def __init__(self) -> None:
        self.total: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[int] = []
        self.originals: list[tuple[object, str, object]] = []

    def timed(self, name: str, fn):
        stack, total, calls = self._stack, self.total, self.calls

        def wrapper(*args, **kwargs):
            stack.append(0)
            t0 = _clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = _clock() - t0
                total[name] += elapsed - stack.pop()
                calls[name] += 1
                if stack:
                    stack[-1] += elapsed

        return wrapper

    def wrap(self, owner, attr: str, name: str) -> None:
        self.originals.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, self.timed(name, getattr(owner, attr)))

    def restore(self) -> None:
        for owner, attr, original in reversed(self.originals):
            setattr(owner, attr, original)
        self.originals.clear()


def _instrument(t: _Timers) -> None:
    import lbml.engine.bar_fills as bf
    import lbml.engine.costs as co
    import lbml.engine.gaps as ga
    import lbml.engine.liquidation as li
    import lbml.engine.purge as pu
    import lbml.engine.recorder as rec
    import lbml.engine.signal_actor as sa
    import lbml.features.pipeline as fp
    import lbml.models.calibration as cal
    import lbml.nautilus.backtest as nb
    import strategies.kelly_leverage as kl
    import strategies.leveraged_base as lb

    t.wrap(fp.FeaturePipeline, "update", "features (pipeline.update)")
    t.wrap(sa, "_bar_event", "features (Bar -> BarEvent)")
    t.wrap(cal.CalibratedModel, "predict_up_one", "model (trees + calibration)")
    t.wrap(sa, "Prediction", "Prediction object")
    t.wrap(sa, "publish_custom", "Prediction publication")
    t.wrap(sa.SignalActor, "on_bar", "signal actor (rest)")
    t.wrap(sa.SignalActor, "on_data", "signal actor (rest)")
    t.wrap(kl, "decide", "strategy: EV rule and Kelly decision")
    t.wrap(kl.KellyLeverage, "on_data", "strategy: prediction handler (rest)")
    t.wrap(kl.KellyLeverage, "on_bar", "strategy: bar handler")
    t.wrap(kl.KellyLeverage, "_enter", "order submission (nautilus): bracket entry")
    t.wrap(lb.LeveragedPositionStrategy, "close_position", "order submission (nautilus): close")
    for handler in ("on_order_filled", "on_order_updated", "on_order_canceled", "on_position_opened",
                    "on_position_changed", "on_position_closed"):
        t.wrap(lb.LeveragedPositionStrategy, handler, "strategy: order and position events")
    t.wrap(rec.RunRecorder, "on_bar", "recorder")
    t.wrap(rec.RunRecorder, "_on_fill", "recorder")
    t.wrap(rec.RunRecorder, "_on_position_event", "recorder")
    t.wrap(pu.CachePurger, "on_bar", "cache purger")
    t.wrap(bf.NextOpenFillModule, "_open_bar_at", "next-open module (lookup)")
    t.wrap(bf.NextOpenFillModule, "_on_data", "next-open module (lookup)")
    for owner, attr in ((co.BoundaryModule, "pre_process"), (co.BorrowInterestModule, "process"),
                        (co.FillChargeModule, "process"), (ga.GapThroughModule, "pre_process"),
                        (li.LiquidationModule, "process")):
        t.wrap(owner, attr, "other venue modules")
    match = t.timed("venue (nautilus): match the next bar's open", lambda engine, tick: engine.process_trade_tick(tick))
    run_venue = t.timed("venue (nautilus): fill due orders (exchange.process)", lambda exchange, ts: exchange.process(ts))

    def fill_at_trade(self, instrument_id, price, size, trade_id: str, ts: int) -> bool:
        engine = self.exchange.get_matching_engine(instrument_id)
        if engine is None:
            return False
        match(engine, nb.TradeTick(instrument_id, price, size, nb.AggressorSide.NO_AGGRESSOR, nb.TradeId(trade_id), ts, ts))
        run_venue(self.exchange, ts)
        return True

    t.originals.append((nb.VenueModule, "fill_at_trade", nb.VenueModule.fill_at_trade))
    nb.VenueModule.fill_at_trade = fill_at_trade  # the same two calls as the original, timed apart


def breakdown(bars: int, train_bars: int, smoke: bool = False) -> dict:
    """Build the market, run the instrumented ML backtest, return the parts (see the module notes).
    ``smoke``: the benchmark's small model (``benchmarks._scenarios.smoke_model``), for a few thousand bars."""
    from benchmarks import bench_backtest
    from benchmarks._scenarios import smoke_model
    from benchmarks._backtest_worker import run_bare_same, run_ml
    from lbml.engine import backtest as engine_backtest
    from lbml.scenario import load_scenario

    timers = _Timers()
    with tempfile.TemporaryDirectory(prefix="lbml-breakdown-") as tmp:
        workdir = Path(tmp) / "bars"
        base = load_scenario(bench_backtest.SCENARIO)
        bench_backtest._prepare_bars(smoke_model(base) if smoke else base, workdir, bars, train_bars)
        replay_ns = []
        replay = engine_backtest.replay_streams

        def timed_replay(*args, **kwargs):
            t0 = _clock()
            try:
                return replay(*args, **kwargs)
            finally:
                replay_ns.append(_clock() - t0)

        engine_backtest.replay_streams = timed_replay
        _instrument(timers)
        try:
            result = run_ml(workdir, True, 250_000, None)
        finally:
            timers.restore()
            engine_backtest.replay_streams = replay
        bare = run_bare_same(workdir, 250_000)
    n, total = result["n_bars"], replay_ns[0]
    parts = dict(timers.total)
    parts["nautilus (rest): data engine, bus dispatch, bar matching, portfolio, conversion"] = total - sum(parts.values())
    return {
        "traded_bars": n, "round_trips": result["n_trades"], "replay_seconds": total / 1e9,
        "us_per_bar": total / n / 1e3,
        # nautilus alone on the same events (no-op strategy): the part of "nautilus (rest)" any
        # strategy pays; the rest of the replay is lbml's components and the engine work they cause.
        "bare_engine_same_events_us_per_bar": bare["run_seconds"] / n * 1e6,
        "parts": {k: {"share": round(v / total, 4), "us_per_bar": round(v / n / 1e3, 2), "calls": timers.calls.get(k)}
                  for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(breakdown(*(args + [60_000, 20_000][len(args):])), indent=1))
