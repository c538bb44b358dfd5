"""The bare nautilus engine under several interpreters/nautilus versions, alternated in one run.

Each *candidate* is a Python interpreter (usually a venv's ``bin/python``) with some nautilus_trader
installed. For every round, mode and candidate a fresh process runs the bare-engine baseline: a
``BacktestEngine`` with a MARGIN/NETTING venue (3x default leverage, maker/taker fees) and a no-op
strategy on N synthetic events:

- ``bars``:  N external 1-minute bars (``bar_execution``), the strategy subscribes to the bars;
- ``ticks``: N trade ticks one second apart (``trade_execution``), the strategy subscribes to the
  ticks and to INTERNAL 1-minute bars that the engine aggregates from them.

Only ``engine.run()`` is timed, in wall time (events/s) and in the process's CPU time (events per
CPU-second: steadier when other processes share the cores); the whole process's wall time
(interpreter start, imports, data generation, run) is reported beside it. Candidates alternate
within each round and the order rotates between rounds, so a change of machine load hits all of
them alike. The ratio of a candidate is the median over rounds of (its rate / the first
candidate's rate in the same round).

Variants: ``--strategy ema`` replaces the no-op strategy by an EMA(10/20) cross that flips one unit
with market orders (the order path: risk engine, matching, fills, portfolio); ``--flat`` makes every
bar O = H = L = C at one price, so the exchange derives no synthetic trades from bars (separates the
per-bar from the per-trade cost).

The worker imports nothing from lbml (only numpy and nautilus_trader), so it runs in a venv that
has nautilus alone: the file is executed by path, ``python bench_engines.py --worker --mode bars
--n N [--strategy ema] [--flat] [--profile FILE] [--no-analysis]``. nautilus 1.x (Cython core) and
2.x (Rust core, different Python API) each have their own worker function.

Command line (from the repository root)::

    python -m benchmarks.bench_engines --candidate 1.221=/path/py311/bin/python \\
        --candidate 1.231=/path/py312/bin/python --n 200000 --rounds 3 [--modes bars ticks]

Extra venue keyword arguments for one candidate (e.g. to switch a feature off)::

    --candidate '1.231-noTE=/path/bin/python:{"trade_execution": false}'

Inside the benchmark suite (``python -m benchmarks.run --only engines``) the candidates are the
current interpreter plus those named in ``LBML_ENGINE_CANDIDATES`` (``name=python;name=python``);
with none named, the rows carry no baseline.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SIZES = {"smoke": {"n": 5_000, "rounds": 1}, "full": {"n": 200_000, "rounds": 3}}
MODES = ("bars", "ticks")
LEVERAGE = "3"
START_NS = 1_704_067_200_000_000_000  # 2024-01-01 UTC


# -- worker (runs under the candidate's interpreter) -----------------------------------------------
def _versions() -> dict:
    import numpy
    import platform

    import nautilus_trader

    out = {"python": platform.python_version(), "numpy": numpy.__version__,
           "nautilus_trader": nautilus_trader.__version__}
    try:
        import pandas

        out["pandas"] = pandas.__version__
    except ImportError:  # nautilus 2.x does not depend on pandas
        out["pandas"] = None
    return out


def _walk(n: int, seed: int, sigma: float):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng, 40_000.0 * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))


def _bar_arrays(n: int, seed: int, flat: bool = False):
    """O/H/L/C/volume arrays of a seeded random walk, rounded to 2 decimals, consistent H/L.
    ``flat``: O = H = L = C at one price, so the exchange derives no synthetic trades from bars
    after the first (isolates the per-synthetic-trade cost from the per-bar cost)."""
    import numpy as np

    if flat:
        price = np.full(n, 40_000.0)
        volume = np.full(n, 10.0)
        ts = START_NS + (np.arange(n, dtype=np.uint64) + 1) * np.uint64(60_000_000_000)
        return price, price, price, price, volume, ts.astype(np.uint64)

    rng, close = _walk(n, seed, 0.0008)
    open_ = np.concatenate(([40_000.0], close[:-1]))
    wick = np.abs(rng.normal(0.0, 0.0004, (2, n)))
    open_, close = np.round(open_, 2), np.round(close, 2)
    high = np.maximum(np.round(np.maximum(open_, close) * np.exp(wick[0]), 2), np.maximum(open_, close))
    low = np.minimum(np.round(np.minimum(open_, close) * np.exp(-wick[1]), 2), np.minimum(open_, close))
    volume = np.round(rng.uniform(1.0, 50.0, n), 6)
    ts = START_NS + (np.arange(n, dtype=np.uint64) + 1) * np.uint64(60_000_000_000)  # bar close times
    return open_, high, low, close, volume, ts.astype(np.uint64)


def _tick_arrays(n: int, seed: int):
    import numpy as np

    rng, price = _walk(n, seed, 0.0001)
    price = np.round(price, 2)
    size = np.round(rng.uniform(0.001, 2.0, n), 6)
    side = rng.integers(1, 3, n).astype(np.uint8)  # 1 = buyer, 2 = seller
    ts = START_NS + np.arange(n, dtype=np.uint64) * np.uint64(1_000_000_000)
    return price, size, side, ts.astype(np.uint64)


class _EmaFlip:
    """EMA(10/20) cross, always in the market with one unit: a market order of (target - net) on
    every cross. Exercises the order path (risk engine, matching, fills, portfolio) at ~1 order
    per 20 bars. Shared by the 1.x and 2.x strategies."""

    def __init__(self, ema_cls) -> None:
        self.fast, self.slow = ema_cls(10), ema_cls(20)
        self.n_orders = 0

    def target(self, bar) -> float | None:
        self.fast.handle_bar(bar)
        self.slow.handle_bar(bar)
        if not self.slow.initialized:
            return None
        return 1.0 if self.fast.value >= self.slow.value else -1.0


def _run_v1(mode: str, n: int, seed: int, venue_kwargs: dict, profile: str | None, flat: bool = False,
            ema: bool = False, analysis: bool = True) -> dict:
    """nautilus_trader 1.x (Cython core): ``nautilus_trader.backtest.engine.BacktestEngine``."""
    from decimal import Decimal

    import numpy as np

    from nautilus_trader.backtest.engine import BacktestEngine
    from nautilus_trader.backtest.models import MakerTakerFeeModel
    from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, StrategyConfig
    from nautilus_trader.model.currencies import BTC, USDT
    from nautilus_trader.model.data import Bar, BarType, TradeTick
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.trading.strategy import Strategy

    venue = Venue("BINANCE")
    iid = InstrumentId(Symbol("BTCUSDT"), venue)
    instrument = CurrencyPair(
        instrument_id=iid, raw_symbol=Symbol("BTCUSDT"), base_currency=BTC, quote_currency=USDT,
        price_precision=2, size_precision=6, price_increment=Price.from_str("0.01"),
        size_increment=Quantity.from_str("0.000001"), lot_size=None,
        max_quantity=Quantity.from_str("9000"), min_quantity=Quantity.from_str("0.000001"),
        max_notional=None, min_notional=Money(5, USDT), max_price=Price.from_str("1000000.00"),
        min_price=Price.from_str("0.01"), margin_init=Decimal("1"), margin_maint=Decimal("0.35"),
        maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0004"), ts_event=0, ts_init=0,
    )
    t0 = time.perf_counter()
    if mode == "bars":
        bar_type = BarType.from_str(f"{iid}-1-MINUTE-LAST-EXTERNAL")
        o, h, l, c, v, ts = _bar_arrays(n, seed, flat)
        events = Bar.from_raw_arrays_to_list(bar_type, 2, 6, o, h, l, c, v, ts, ts)
    else:
        bar_type = BarType.from_str(f"{iid}-1-MINUTE-LAST-INTERNAL")
        price, size, side, ts = _tick_arrays(n, seed)
        events = TradeTick.from_raw_arrays_to_list(
            iid, 2, 6, price, size, side, [str(i) for i in range(n)], ts, ts)
    gen_seconds = time.perf_counter() - t0

    from nautilus_trader.indicators import ExponentialMovingAverage
    from nautilus_trader.model.enums import OrderSide

    class NoOpConfig(StrategyConfig, frozen=True):
        bar_type: BarType
        ticks: bool = False
        ema: bool = False

    class NoOp(Strategy):
        def __init__(self, config: NoOpConfig) -> None:
            super().__init__(config)
            self.n_bars = 0
            self.n_ticks = 0
            self.flip = _EmaFlip(ExponentialMovingAverage) if config.ema else None

        def on_start(self) -> None:
            self.subscribe_bars(self.config.bar_type)
            if self.config.ticks:
                self.subscribe_trade_ticks(self.config.bar_type.instrument_id)

        def on_bar(self, bar) -> None:
            self.n_bars += 1
            if self.flip is None:
                return
            target = self.flip.target(bar)
            if target is None:
                return
            delta = target - float(self.portfolio.net_position(bar.bar_type.instrument_id))
            if delta != 0.0:
                self.flip.n_orders += 1
                self.submit_order(self.order_factory.market(
                    bar.bar_type.instrument_id, OrderSide.BUY if delta > 0 else OrderSide.SELL,
                    instrument.make_qty(abs(delta))))

        def on_trade_tick(self, tick) -> None:
            self.n_ticks += 1

    engine = BacktestEngine(BacktestEngineConfig(
        logging=LoggingConfig(log_level="ERROR"), run_analysis=analysis))
    kwargs = dict(bar_execution=True, trade_execution=(mode == "ticks"))
    kwargs.update(venue_kwargs)
    engine.add_venue(
        venue=venue, oms_type=OmsType.NETTING, account_type=AccountType.MARGIN, base_currency=USDT,
        starting_balances=[Money(10_000_000, USDT)], default_leverage=Decimal(LEVERAGE),
        fee_model=MakerTakerFeeModel(), **kwargs,
    )
    engine.add_instrument(instrument)
    engine.add_data(events)
    del events
    strategy = NoOp(NoOpConfig(bar_type=bar_type, ticks=(mode == "ticks"), ema=ema))
    engine.add_strategy(strategy)
    run_seconds = _timed_run(engine.run, profile)
    out = {"gen_seconds": gen_seconds, "run_seconds": run_seconds,
           "bars_seen": strategy.n_bars, "ticks_seen": strategy.n_ticks,
           "orders": strategy.flip.n_orders if strategy.flip else 0}
    engine.dispose()
    np.asarray(0)  # keep numpy imported in the profile's process
    return out


def _run_v2(mode: str, n: int, seed: int, venue_kwargs: dict, profile: str | None, flat: bool = False,
            ema: bool = False, analysis: bool = True) -> dict:
    """nautilus_trader 2.x (Rust core, PyO3): ``nautilus_trader.backtest.BacktestEngine``."""
    from decimal import Decimal

    from nautilus_trader.backtest import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.common import LoggerConfig, LogLevel
    from nautilus_trader.execution import MakerTakerFeeModel
    from nautilus_trader.model import (
        AccountType, AggressorSide, Bar, BarType, Currency, CurrencyPair, InstrumentId, Money,
        OmsType, Price, Quantity, Symbol, TradeId, TradeTick, Venue,
    )
    from nautilus_trader.indicators import ExponentialMovingAverage
    from nautilus_trader.model import OrderSide
    from nautilus_trader.trading import Strategy

    usdt, btc = Currency.from_str("USDT"), Currency.from_str("BTC")
    venue = Venue("BINANCE")
    iid = InstrumentId(Symbol("BTCUSDT"), venue)
    instrument = CurrencyPair(
        iid, Symbol("BTCUSDT"), btc, usdt, 2, 6, Price.from_str("0.01"), Quantity.from_str("0.000001"),
        0, 0, max_quantity=Quantity.from_str("9000"), min_quantity=Quantity.from_str("0.000001"),
        min_notional=Money(5, usdt), max_price=Price.from_str("1000000.00"), min_price=Price.from_str("0.01"),
        margin_init=Decimal("1"), margin_maint=Decimal("0.35"),
    )
    t0 = time.perf_counter()
    if mode == "bars":
        bar_type = BarType.from_str(f"{iid}-1-MINUTE-LAST-EXTERNAL")
        o, h, l, c, v, ts = _bar_arrays(n, seed, flat)
        events = [
            Bar(bar_type, Price(o[i], 2), Price(h[i], 2), Price(l[i], 2), Price(c[i], 2), Quantity(v[i], 6),
                int(ts[i]), int(ts[i]))
            for i in range(n)
        ]
    else:
        bar_type = BarType.from_str(f"{iid}-1-MINUTE-LAST-INTERNAL")
        price, size, side, ts = _tick_arrays(n, seed)
        sides = {1: AggressorSide.BUY, 2: AggressorSide.SELL}
        events = [
            TradeTick(iid, Price(price[i], 2), Quantity(size[i], 6), sides[int(side[i])], TradeId(str(i)),
                      int(ts[i]), int(ts[i]))
            for i in range(n)
        ]
    gen_seconds = time.perf_counter() - t0

    class NoOp(Strategy):  # 2.x: Strategy.__new__ takes only a config, so settings are set after
        def __init__(self) -> None:
            super().__init__()
            self.bar_type = None
            self.ticks = False
            self.n_bars = 0
            self.n_ticks = 0
            self.flip = None

        def on_start(self) -> None:
            self.subscribe_bars(self.bar_type)
            if self.ticks:
                self.subscribe_trades(self.bar_type.instrument_id)

        def on_bar(self, bar) -> None:
            self.n_bars += 1
            if self.flip is None:
                return
            target = self.flip.target(bar)
            if target is None:
                return
            delta = target - float(self.portfolio.net_position(iid))
            if delta != 0.0:
                self.flip.n_orders += 1
                self.submit_order(self.order_factory.market(
                    iid, OrderSide.BUY if delta > 0 else OrderSide.SELL, Quantity(abs(delta), 6)))

        def on_trade(self, trade) -> None:
            self.n_ticks += 1

    engine = BacktestEngine(BacktestEngineConfig(logging=LoggerConfig(stdout_level=LogLevel.ERROR)))
    kwargs = dict(bar_execution=True, trade_execution=(mode == "ticks"))
    kwargs.update(venue_kwargs)
    engine.add_venue(
        venue, OmsType.NETTING, AccountType.MARGIN, [Money(10_000_000, usdt)], base_currency=usdt,
        default_leverage=Decimal(LEVERAGE),
        fee_model=MakerTakerFeeModel(Decimal("0.0002"), Decimal("0.0004")),  # 2.x: rates live on the model
        **kwargs,
    )
    engine.add_instrument(instrument)
    engine.add_data(events)
    del events
    strategy = NoOp()
    strategy.bar_type, strategy.ticks = bar_type, mode == "ticks"
    strategy.flip = _EmaFlip(ExponentialMovingAverage) if ema else None
    engine.add_strategy(strategy)
    run_seconds = _timed_run(engine.run, profile)
    out = {"gen_seconds": gen_seconds, "run_seconds": run_seconds,
           "bars_seen": strategy.n_bars, "ticks_seen": strategy.n_ticks,
           "orders": strategy.flip.n_orders if strategy.flip else 0}
    engine.dispose()
    return out


def _timed_run(run, profile: str | None) -> float:
    import gc

    gc.collect()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(run)
        seconds = time.perf_counter() - t0
        prof.dump_stats(profile)
        return seconds
    t0 = time.perf_counter()
    c0 = time.process_time()
    run()
    _CPU[0] = time.process_time() - c0
    return time.perf_counter() - t0


_CPU = [None]  # CPU seconds of the last timed run (less sensitive than wall time to other load)


def worker(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_engines --worker")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--venue-kwargs", default="{}", help="JSON: extra add_venue keyword arguments")
    p.add_argument("--profile", default=None, help="write cProfile stats of engine.run() here")
    p.add_argument("--flat", action="store_true", help="bars mode: O = H = L = C, one price throughout")
    p.add_argument("--strategy", choices=("noop", "ema"), default="noop")
    p.add_argument("--no-analysis", action="store_true", help="1.x: BacktestEngineConfig(run_analysis=False)")
    args = p.parse_args(argv)
    import nautilus_trader

    major = int(nautilus_trader.__version__.split(".")[0])
    run = _run_v2 if major >= 2 else _run_v1
    res = run(args.mode, args.n, args.seed, json.loads(args.venue_kwargs), args.profile, args.flat,
              args.strategy == "ema", not args.no_analysis)
    res.update(mode=args.mode, flat=args.flat, strategy=args.strategy, n=args.n, events_per_s=args.n / res["run_seconds"], cpu_seconds=_CPU[0],
               events_per_cpu_s=(args.n / _CPU[0]) if _CPU[0] else None,
               us_per_event=1e6 * res["run_seconds"] / args.n, versions=_versions())
    print("RESULT " + json.dumps(res), flush=True)
    return 0


# -- orchestrator ----------------------------------------------------------------------------------
def parse_candidate(text: str) -> tuple[str, str, dict]:
    """``NAME=PYTHON`` or ``NAME=PYTHON:{json venue kwargs}`` -> (name, python, kwargs)."""
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise ValueError(f"candidate {text!r}: expected NAME=PYTHON[:JSON]")
    python, sep, extra = rest.partition(":{")
    return name, python, (json.loads("{" + extra) if sep else {})


def run_worker(python: str, mode: str, n: int, seed: int = 42, venue_kwargs: dict | None = None,
               profile: str | None = None, timeout: float = 3600, flat: bool = False,
               strategy: str = "noop") -> dict:
    cmd = [python, str(HERE), "--worker", "--mode", mode, "--n", str(n), "--seed", str(seed),
           "--venue-kwargs", json.dumps(venue_kwargs or {}), "--strategy", strategy]
    cmd += ["--flat"] if flat else []
    if profile:
        cmd += ["--profile", profile]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"],
                "returncode": proc.returncode, "mode": mode, "n": n}
    res = json.loads(lines[-1][len("RESULT "):])
    res["process_wall_seconds"] = wall
    return res


def compare(candidates: list[tuple[str, str, dict]], modes=MODES, n: int = 200_000, rounds: int = 3,
            log=lambda s: print(s, file=sys.stderr, flush=True), flat: bool = False,
            strategy: str = "noop") -> dict:
    """Run every candidate in every mode for ``rounds`` rounds, alternating; return the raw runs
    and a summary (median events/s, median paired ratio vs the first candidate)."""
    runs = []
    load_before = os.getloadavg()
    for r in range(rounds):
        order = candidates[r % len(candidates):] + candidates[:r % len(candidates)]
        for mode in modes:
            for name, python, kwargs in order:
                res = run_worker(python, mode, n, venue_kwargs=kwargs, flat=flat, strategy=strategy)
                res.update(candidate=name, round=r, load1=os.getloadavg()[0])
                runs.append(res)
                shown = f"{res['events_per_s']:,.0f} events/s" if "events_per_s" in res else f"ERROR {res['error']}"
                log(f"round {r + 1}/{rounds} {mode:5s} {name:>16s}: {shown}")
    summary = []
    base = candidates[0][0]
    for mode in modes:
        for name, python, kwargs in candidates:
            mine = [x for x in runs if x["candidate"] == name and x["mode"] == mode and "events_per_s" in x]
            ratios, cpu_ratios = [], []
            for r in range(rounds):
                a = [x for x in mine if x["round"] == r]
                b = [x for x in runs if x["candidate"] == base and x["mode"] == mode and x["round"] == r
                     and "events_per_s" in x]
                if a and b:
                    ratios.append(a[0]["events_per_s"] / b[0]["events_per_s"])
                    cpu_ratios.append(a[0]["events_per_cpu_s"] / b[0]["events_per_cpu_s"])
            summary.append({
                "candidate": name, "mode": mode, "python": python, "venue_kwargs": kwargs,
                "events_per_s": statistics.median([x["events_per_s"] for x in mine]) if mine else None,
                "ratio_vs_" + base: statistics.median(ratios) if ratios else None,
                "events_per_cpu_s": statistics.median([x["events_per_cpu_s"] for x in mine]) if mine else None,
                "cpu_ratio_vs_" + base: statistics.median(cpu_ratios) if cpu_ratios else None,
                "process_wall_s": statistics.median([x["process_wall_seconds"] for x in mine]) if mine else None,
                "versions": mine[0]["versions"] if mine else None,
                "errors": [x["error"] for x in runs if x["candidate"] == name and x["mode"] == mode and "error" in x],
            })
    return {"n": n, "rounds": rounds, "baseline": base, "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(), "summary": summary, "runs": runs}


def markdown(result: dict) -> str:
    base = result["baseline"]
    lines = [f"| candidate | mode | python | numpy | pandas | nautilus | events/s (wall) | ratio vs {base} "
             f"| events per CPU-s | CPU ratio vs {base} | process wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in result["summary"]:
        v = s["versions"] or {}
        eps = f"{s['events_per_s']:,.0f}" if s["events_per_s"] else "error"
        ratio = s["ratio_vs_" + base]
        ratio = "" if ratio is None else f"{ratio:.2f}"
        wall = "" if s["process_wall_s"] is None else f"{s['process_wall_s']:.1f}"
        cpu = f"{s['events_per_cpu_s']:,.0f}" if s["events_per_cpu_s"] else ""
        cpu_ratio = s["cpu_ratio_vs_" + base]
        cpu_ratio = "" if cpu_ratio is None else f"{cpu_ratio:.2f}"
        lines.append(f"| {s['candidate']} | {s['mode']} | {v.get('python')} | {v.get('numpy')} | {v.get('pandas')} | "
                     f"{v.get('nautilus_trader')} | {eps} | {ratio} | {cpu} | {cpu_ratio} | {wall} |")
    lb, la = result["loadavg_before"], result["loadavg_after"]
    lines.append(f"\nN = {result['n']:,} events per run, {result['rounds']} rounds, {result['cpus']} CPUs, "
                 f"load average before {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}, after {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}")
    return "\n".join(lines)


def _suite_candidates() -> list[tuple[str, str, dict]]:
    cands = [("current", sys.executable, {})]
    for item in filter(None, os.environ.get("LBML_ENGINE_CANDIDATES", "").split(";")):
        cands.append(parse_candidate(item.strip()))
    return cands


def run(size: str) -> list[dict]:
    """Suite entry point: rows per candidate and mode; baseline = the current interpreter."""
    cfg = SIZES[size]
    result = compare(_suite_candidates(), n=cfg["n"], rounds=cfg["rounds"],
                     log=lambda s: print(f"  [engines] {s}", file=sys.stderr, flush=True))
    rows = []
    by = {(s["candidate"], s["mode"]): s for s in result["summary"]}
    for s in result["summary"]:
        if s["events_per_s"] is None:
            continue
        base = by[("current", s["mode"])]["events_per_s"] if s["candidate"] != "current" else None
        v = s["versions"]
        rows.append({
            "name": f"engine_{s['mode']}_{s['candidate']}", "value": s["events_per_s"], "unit": "events/s",
            "baseline": base, "ratio": (s["events_per_s"] / base) if base else None, "target": None, "met": None,
            "note": f"bare BacktestEngine, no-op strategy, {cfg['n']:,} events; python {v['python']}, "
                    f"nautilus {v['nautilus_trader']}, numpy {v['numpy']}, pandas {v['pandas']}",
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_engines", description=__doc__.split("\n")[0])
    p.add_argument("--candidate", action="append", required=True, help="NAME=PYTHON[:JSON venue kwargs]")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None, help="write all runs and the summary here")
    p.add_argument("--flat", action="store_true", help="bars mode: flat bars (no synthetic trades)")
    p.add_argument("--strategy", choices=("noop", "ema"), default="noop",
                   help="noop (the baseline) or ema: an EMA cross flipping one unit with market orders")
    args = p.parse_args(argv)
    result = compare([parse_candidate(c) for c in args.candidate], args.modes, args.n, args.rounds,
                     flat=args.flat, strategy=args.strategy)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
