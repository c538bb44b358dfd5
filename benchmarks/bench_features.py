"""Feature benchmark: per-bar incremental cost of the full feature set and batch throughput.

``run(size)`` builds a market of ``smoke`` (5,000) or ``full`` (1,000,000) one-minute bars with
every input the feature set uses (taker-buy volume, 3 quotes and 6 depth snapshots per bar, a
reference instrument, funding every 8 h), then measures:

- the incremental cost per bar of all features together (the bar's events plus ``update``), as
  p50/p99 in µs of thread CPU time, on the default path (the built-in plugins' compiled kernels,
  ``lbml.features.native``); baseline: the same plugins all in Python (``compiled=False``, the
  reference implementation) measured the same way in the same run. The machine is shared, so
  wall-clock p99 (also reported, without a target) mostly measures preemption by other processes;
  CPU time measures the code;
- the batch throughput of ``compute_features`` (the replay training uses), in rows per CPU second
  (and per wall second); baseline: the Python path's replay.

Both paths' feature matrices are compared with ``==`` in the run (the benchmark fails otherwise).

Run alone: ``python -m benchmarks.bench_features [smoke|full]``.
"""

import sys
import time

import numpy as np
import pandas as pd

from lbml.data.frames import InstrumentData
from lbml.features.pipeline import FeaturePipeline, bar_events, compute_features
from lbml.plugins import load_registry

SIZES = {"smoke": 5_000, "full": 1_000_000}
FULL_SET = ("technical", "volatility", "lagged", "cross_asset", "funding", "order_flow", "quotes", "depth")
P99_TARGET_US = 30.0
ROWS_TARGET = 200_000.0
_NS_MIN = 60_000_000_000


def make_inputs(n: int, seed: int = 7):
    """Bars, quotes, depth, reference bars and funding for ``n`` one-minute bars (vectorised)."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-01-01", tz="UTC").value + _NS_MIN * np.arange(1, n + 1)
    index = pd.DatetimeIndex(ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC")

    def ohlcv(start: float) -> pd.DataFrame:
        close = start * np.exp(np.cumsum(rng.standard_t(5, n) * 6e-4))
        open_ = np.concatenate(([start], close[:-1]))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 3e-4, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 3e-4, n)))
        volume = rng.lognormal(0, 0.8, n)
        return pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
             "taker_buy_volume": volume * rng.random(n)},
            index=index,
        )

    bars, ref = ohlcv(600.0), ohlcv(60_000.0)
    q_ts = np.sort(np.repeat(ts, 3) - rng.integers(1, _NS_MIN, 3 * n))
    mid = np.repeat(bars["close"].to_numpy(), 3)
    half = mid * 1e-4
    quotes = pd.DataFrame(
        {"bid": mid - half, "ask": mid + half, "bid_size": rng.lognormal(5, 0.5, 3 * n),
         "ask_size": rng.lognormal(5, 0.5, 3 * n)},
        index=pd.DatetimeIndex(q_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"),
    )
    d_ts = np.repeat(ts - _NS_MIN, 6) + np.tile(np.arange(6) * 10_000_000_000 + 5_000_000_000, n)
    depth = pd.DataFrame(
        {"bid_depth": rng.lognormal(7, 0.5, 6 * n), "ask_depth": rng.lognormal(7, 0.5, 6 * n)},
        index=pd.DatetimeIndex(d_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"),
    )
    f_ts = ts[479::480]
    funding = pd.DataFrame(
        {"rate": rng.normal(1e-4, 1e-4, len(f_ts))},
        index=pd.DatetimeIndex(f_ts.astype("datetime64[ns]"), name="ts").tz_localize("UTC"),
    )
    data = InstrumentData(symbol="BNBUSDT", bars=bars, quotes=quotes, depth=depth)
    return data, bars, ref, funding


def per_bar_costs(pipeline: FeaturePipeline, data, bars, ref, funding, clock=time.thread_time_ns) -> np.ndarray:
    """Time each bar's work (its quotes, depth, funding and reference bar, then ``update``), in ns."""
    pipeline.reset()
    events = bar_events(bars)
    ref_events = bar_events(ref)
    q, d = data.quotes, data.depth
    q_ts, qb, qa, qbs, qas = q.index.asi8, *(q[c].to_numpy().tolist() for c in ("bid", "ask", "bid_size", "ask_size"))
    d_ts, db, da = d.index.asi8, d["bid_depth"].to_numpy().tolist(), d["ask_depth"].to_numpy().tolist()
    f_ts, fr = funding.index.asi8, funding["rate"].to_numpy().tolist()
    q_end = np.searchsorted(q_ts, bars.index.asi8, side="right").tolist()
    d_end = np.searchsorted(d_ts, bars.index.asi8, side="right").tolist()
    f_end = np.searchsorted(f_ts, bars.index.asi8, side="right").tolist()
    q_ts, d_ts, f_ts = q_ts.tolist(), d_ts.tolist(), f_ts.tolist()
    costs = np.empty(len(events), dtype=np.int64)
    qi = di = fi = 0
    for row, bar in enumerate(events):
        started = clock()
        for i in range(qi, q_end[row]):
            pipeline.on_quote(q_ts[i], qb[i], qa[i], qbs[i], qas[i])
        for i in range(di, d_end[row]):
            pipeline.on_depth(d_ts[i], db[i], da[i])
        for i in range(fi, f_end[row]):
            pipeline.on_funding(f_ts[i], fr[i])
        pipeline.on_reference_bar(ref_events[row])
        pipeline.update(bar)
        costs[row] = clock() - started
        qi, di, fi = q_end[row], d_end[row], f_end[row]
    return costs


def _pipeline(names, compiled: bool = True) -> FeaturePipeline:
    registry = load_registry()
    return FeaturePipeline([registry.feature(n)() for n in names], compiled=compiled)


def run(size: str) -> list[dict]:
    n = SIZES[size]
    data, bars, ref, funding = make_inputs(n)
    full, python = _pipeline(FULL_SET), _pipeline(FULL_SET, compiled=False)
    if not full.compiled_plugins:
        raise RuntimeError("compiled features unavailable (see the log line): nothing to measure")
    fit_rows = min(n, 100_000)
    full.fit(bars.iloc[:fit_rows])
    python.fit(bars.iloc[:fit_rows])

    warm = full.warmup_bars
    full_costs = per_bar_costs(full, data, bars, ref, funding)[warm:] / 1e3
    py_costs = per_bar_costs(python, data, bars, ref, funding)[warm:] / 1e3
    f50, f99 = np.percentile(full_costs, [50, 99])
    p50, p99 = np.percentile(py_costs, [50, 99])
    wall = time.perf_counter_ns
    w99 = np.percentile(per_bar_costs(full, data, bars, ref, funding, wall)[warm:] / 1e3, 99)
    pw99 = np.percentile(per_bar_costs(python, data, bars, ref, funding, wall)[warm:] / 1e3, 99)

    full_cpu, full_wall = _timed(lambda: compute_features(full, data, bars, ref, funding))
    py_cpu, py_wall = _timed(lambda: compute_features(python, data, bars, ref, funding))
    compiled_matrix = compute_features(full, data, bars, ref, funding).to_numpy()
    python_matrix = compute_features(python, data, bars, ref, funding).to_numpy()
    if not ((compiled_matrix == python_matrix) | (np.isnan(compiled_matrix) & np.isnan(python_matrix))).all():
        raise RuntimeError("compiled features differ from the Python reference")

    k = len(full.names)
    note = (f"{k} features ({len(full.compiled_plugins)} of {len(full.plugins)} plugins compiled), {n:,} bars, "
            "3 quotes + 6 depth snapshots per bar; baseline: the same plugins in Python (reference), "
            "equal with == in this run")
    return [
        _row("features per-bar incremental p50 (cpu)", f50, "us", p50, None, note),
        _row("features per-bar incremental p99 (cpu)", f99, "us", p99, f"< {P99_TARGET_US:g} us", note,
             bool(f99 < P99_TARGET_US)),
        _row("features per-bar incremental p99 (wall)", w99, "us", pw99, None, note + "; includes preemption"),
        _row("features batch replay throughput (cpu)", n / full_cpu, "rows/s", n / py_cpu,
             f">= {ROWS_TARGET:,.0f} rows/s", note, bool(n / full_cpu >= ROWS_TARGET)),
        _row("features batch replay throughput (wall)", n / full_wall, "rows/s", n / py_wall, None, note),
    ]


def _timed(fn) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def _row(name, value, unit, baseline, target, note, met=None) -> dict:
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "baseline": float(baseline),
        "ratio": float(value) / float(baseline) if baseline else None,
        "target": target,
        "met": met,
        "note": note,
    }


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(f"{row['name']:<42} {row['value']:>12,.1f} {row['unit']:<7} baseline {row['baseline']:>10,.1f}"
              f"  ratio {row['ratio']:.2f}  target {row['target']}  met {row['met']}")
