"""Look-ahead and parity analysis of feature plugins (``lbml features check``).

The contract: a feature's value at bar t may depend on the events up to t's close and on the
plugin's fitted state, learned by ``fit`` from the bars it is handed (the training window [0, F])
and nothing else. Fitted state legitimately depends on every bar of the window: GARCH parameters
move when any training bar moves, so "perturb the future of t and refit" cannot be the test for
t < F, or every parametric plugin fails. The check therefore splits the question:

- **causality of the updates**, cuts t inside the window: the data after t is perturbed (bars,
  trades, quotes, depth, reference bars, funding); ``fit`` runs on the perturbed window, then the
  baseline's fitted state is loaded; every value at or before t must stay bit-identical. Whatever a
  plugin carries from ``fit`` to ``update`` other than its declared state (a peek at training bars)
  shows up here.
- **fit reads only what it is handed**, cuts t at or after F: the perturbation leaves the window's
  bars alone, so a fresh pipeline fitted on the perturbed data must produce the *same* fitted state
  and, without loading anything, the same values at or before t. A ``fit`` that learns from more
  than the frame it got (the buffer behind the slice, a cache, its own copy of the data) changes.
- **fitted state is a parameter set, not per-bar data**: the state fitted on the first 3/4 of the
  window must have the same structure (keys, list lengths) as the one fitted on the whole window.
  A state that grows with the window (a per-bar table: next closes, a centred average) hands
  in-sample bars their own future while satisfying the two tests above.
- **inputs come only through the pipeline**: a plugin that opens a file itself reads something no
  perturbation of the events reaches; every such open is a failure (``lbml.features.file_watch``).
- **batch/stream parity**: a fresh pipeline that only loads the (JSON round-tripped) fitted state,
  fed one event at a time in engine order, must reproduce the batch replay (relative difference
  at most ``PARITY_RTOL``).
- **non-finite values after warm-up** and the **observed warm-up** against the declared one.

Each leak is reported with the first bar whose value it changes (``FeatureResult.leak_bar``).
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from lbml.data.frames import InstrumentData
from lbml.errors import PluginError
from lbml.features.base import FeatureInput
from lbml.features.file_watch import FileRead, watch_file_reads
from lbml.features.pipeline import FeaturePipeline, bar_events, compute_features

#: Bumped whenever the check can reach a different verdict on the same plugin and data (cache key).
CHECK_VERSION = "2"
PARITY_RTOL = 1e-9
PARITY_ATOL = 1e-12


@dataclass(frozen=True)
class FeatureInputs:
    """Everything a pipeline can be fed for one instrument."""

    data: InstrumentData
    bars: pd.DataFrame
    reference_bars: pd.DataFrame | None = None
    funding: pd.DataFrame | None = None

    def between(self, after: pd.Timestamp | None, end: pd.Timestamp) -> "FeatureInputs":
        """Return the events with ``after < timestamp <= end`` (every bar's ticks stay with it)."""

        def clip(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            if frame is None:
                return None
            index = frame.index
            lo = 0 if after is None else int(index.searchsorted(after, side="right"))
            return frame.iloc[lo : int(index.searchsorted(end, side="right"))]

        data = self.data
        data = replace(data, trades=clip(data.trades), quotes=clip(data.quotes), depth=clip(data.depth))
        return FeatureInputs(data, clip(self.bars), clip(self.reference_bars), clip(self.funding))

    def feeding(self, inputs: frozenset[FeatureInput]) -> "FeatureInputs":
        """Return only the streams a pipeline with these inputs is fed (the others never reach it)."""
        data = self.data
        data = replace(
            data,
            trades=data.trades if FeatureInput.TRADES in inputs else None,
            quotes=data.quotes if FeatureInput.QUOTES in inputs else None,
            depth=data.depth if FeatureInput.DEPTH in inputs else None,
        )
        return FeatureInputs(
            data,
            self.bars,
            self.reference_bars if FeatureInput.REFERENCE in inputs else None,
            self.funding if FeatureInput.FUNDING in inputs else None,
        )

    def digest(self) -> str:
        """Return a hash of every frame (index and values), for caching results on these inputs."""
        h = hashlib.sha256()
        data = self.data
        for frame in (self.bars, data.trades, data.quotes, data.depth, self.reference_bars, self.funding):
            if frame is None:
                h.update(b"-")
            else:
                h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
                h.update(",".join(map(str, frame.columns)).encode())
        return h.hexdigest()[:32]


@dataclass(frozen=True)
class FeatureResult:
    """Check outcome for one feature column."""

    name: str
    plugin: str
    warmup_declared: int
    warmup_observed: int | None  # None: never finite on this data
    causal: bool
    parity_max_rel: float
    nonfinite_after_warmup: int
    version: str = "1"
    leak: str = ""  # why the feature is not causal ("" when it is)
    leak_bar: pd.Timestamp | None = None  # first bar whose value the leak changes, when known

    @property
    def parity_ok(self) -> bool:
        return self.parity_max_rel <= PARITY_RTOL

    @property
    def ok(self) -> bool:
        return self.causal and self.parity_ok and self.nonfinite_after_warmup == 0


@dataclass
class CheckReport:
    """Per-feature results plus what the check ran on."""

    results: list[FeatureResult]
    n_bars: int
    cuts: list[int]
    unavailable: list[tuple[str, str]] = field(default_factory=list)  # (plugin, reason)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[FeatureResult]:
        return [r for r in self.results if not r.ok]

    def to_table(self) -> str:
        header = ("feature", "plugin", "warm-up decl/obs", "causal", "parity max rel", "non-finite", "status")
        rows = [header]
        for r in self.results:
            observed = "never" if r.warmup_observed is None else str(r.warmup_observed)
            rows.append(
                (
                    r.name,
                    r.plugin,
                    f"{r.warmup_declared}/{observed}",
                    "ok" if r.causal else "LEAK",
                    f"{r.parity_max_rel:.1e}" + ("" if r.parity_ok else " FAIL"),
                    str(r.nonfinite_after_warmup),
                    "ok" if r.ok else "FAIL",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for r in self.results:
            if r.leak:
                lines.append(f"leak: {describe_leak(r)}")
        for plugin, reason in self.unavailable:
            lines.append(f"declared unavailable: {plugin} ({reason})")
        return "\n".join(lines)


def describe_leak(r: FeatureResult) -> str:
    """Return one line: the feature, the first bar the leak changes, why, and the plugin."""
    where = f" at bar {r.leak_bar:%Y-%m-%d %H:%M}" if r.leak_bar is not None else ""
    return f"feature {r.name!r}{where} {r.leak} (plugin {r.plugin} {r.version})"


def check_features(
    make_pipeline: Callable[[], FeaturePipeline],
    inputs: FeatureInputs,
    fit_end: pd.Timestamp,
    *,
    n_cuts: int = 12,
    seed: int = 0,
    cuts: list[int] | None = None,
) -> CheckReport:
    """Run the causality, parity and warm-up checks; ``make_pipeline`` must build fresh plugins.

    Parameters
    ----------
    make_pipeline : callable
        Returns a new, unfitted ``FeaturePipeline`` each call.
    inputs : FeatureInputs
        The data to check on.
    fit_end : pandas.Timestamp
        End of the training window: ``fit`` sees bars up to here only.
    n_cuts : int
        Number of random cut points (ignored when ``cuts`` is given).
    seed : int
        Seed of the cut points and perturbations.
    cuts : list of int, optional
        Explicit cut rows (bar positions).
    """
    bars = inputs.bars
    n = len(bars)
    rng = np.random.default_rng(seed)
    fit_rows = int(bars.index.searchsorted(fit_end, side="right"))  # bars ``fit`` sees
    if cuts is None:
        cuts = _random_cuts(n, fit_rows, n_cuts, rng)

    with watch_file_reads() as reads:
        base = make_pipeline()
        base.fit(bars.loc[:fit_end])
        state = _round_trip(base.fitted_state())
        baseline = _replay(base, inputs).to_numpy()

        stream = make_pipeline()
        stream.load_fitted_state(state)
        streamed = stream_features(stream, inputs)
        parity = _max_rel_diff(streamed, baseline)

        leaks = _Leaks(bars.index, base)
        for cut in cuts:
            perturbed = perturb_after(inputs, bars.index[cut], rng)
            pipeline = make_pipeline()
            pipeline.fit(perturbed.bars.loc[:fit_end])
            if cut < fit_rows - 1:  # the perturbation reaches into the fit window
                pipeline.load_fitted_state(state)
                moved: set[str] = set()
            else:
                refit = _round_trip(pipeline.fitted_state())
                moved = {name for name in state if _canonical(refit.get(name)) != _canonical(state[name])}
            head = replace(perturbed, bars=perturbed.bars.iloc[: cut + 1])
            values = _replay(pipeline, head).to_numpy()
            leaks.record(_first_changed_rows(values, baseline[: cut + 1]), moved)
        _check_state_structure(make_pipeline, inputs, fit_rows, state, baseline, leaks)
    leaks.record_reads(reads)

    results = []
    col = 0
    for plugin in base.plugins:
        declared = plugin.warmup_bars()
        for name in plugin.output_names():
            finite = np.isfinite(baseline[:, col])
            bad = np.flatnonzero(~finite)
            observed = None if not finite.any() else (int(bad[-1]) + 1 if len(bad) else 0)
            reason, leak_bar = leaks.of(col)
            results.append(
                FeatureResult(
                    name=name,
                    plugin=plugin.name,
                    warmup_declared=declared,
                    warmup_observed=observed,
                    causal=not reason,
                    parity_max_rel=float(parity[col]),
                    nonfinite_after_warmup=int((~finite[declared:]).sum()),
                    version=str(plugin.version),
                    leak=reason,
                    leak_bar=leak_bar,
                )
            )
            col += 1
    return CheckReport(results=results, n_bars=n, cuts=list(cuts))


_LATER_BARS = "changes when later bars change"
_STATE_MOVES = "changes with the fitted state, which changes when bars after the fit window change"
_STATE_GROWS = (
    "changes when later bars leave the fit window: its fitted state grows with the window (per-bar data)"
)


class _Leaks:
    """Per feature column: the earliest leaking row found so far and why."""

    def __init__(self, index: pd.DatetimeIndex, pipeline: FeaturePipeline) -> None:
        self._index = index
        self._row = np.full(len(pipeline.names), -1, dtype=np.int64)
        self._reason = [""] * len(pipeline.names)
        self._reads: dict[int, FileRead] = {}
        self._columns: dict[str, list[int]] = {}
        col = 0
        for plugin in pipeline.plugins:
            width = len(plugin.output_names())
            self._columns[plugin.name] = list(range(col, col + width))
            col += width

    def columns(self, plugin: str) -> list[int]:
        return self._columns.get(plugin, [])

    def record(self, rows: np.ndarray, moved: set[str] = frozenset(), reason: str = _LATER_BARS) -> None:
        """Record per-column first changed rows (-1: unchanged); ``moved`` plugins' state changed."""
        reasons = [reason] * len(rows)
        for plugin in moved:
            for col in self.columns(plugin):
                reasons[col] = _STATE_MOVES
                rows[col] = rows[col] if rows[col] >= 0 else len(self._index)  # the state itself leaks
        for col, row in enumerate(rows.tolist()):
            if row >= 0 and (self._row[col] < 0 or row < self._row[col]):
                self._row[col], self._reason[col] = row, reasons[col]

    def record_reads(self, reads: list[FileRead]) -> None:
        for read in reads:
            for col in self.columns(read.plugin):
                self._reads.setdefault(col, read)

    def of(self, col: int) -> tuple[str, pd.Timestamp | None]:
        read = self._reads.get(col)
        if read is not None:
            bar = None if read.bar_ts is None else pd.Timestamp(read.bar_ts, tz=self._index.tz)
            return f"reads {read.path} itself (in {read.method}); the check cannot perturb it", bar
        row = int(self._row[col])
        if row < 0:
            return "", None
        return self._reason[col], self._index[row] if row < len(self._index) else None


def _check_state_structure(
    make_pipeline: Callable[[], FeaturePipeline],
    inputs: FeatureInputs,
    fit_rows: int,
    state: dict,
    baseline: np.ndarray,
    leaks: _Leaks,
) -> None:
    """Fit on the window's first 3/4: a plugin whose state changes structure stores per-bar data."""
    short_rows = fit_rows * 3 // 4
    if short_rows < 2:
        return
    short = make_pipeline()
    try:
        short.fit(inputs.bars.iloc[:short_rows])
    except PluginError:  # too little data for some plugin to fit: nothing to compare
        return
    short_state = _round_trip(short.fitted_state())
    grown = {name for name in state if _structure(short_state.get(name)) != _structure(state[name])}
    if not grown:
        return
    head = replace(inputs, bars=inputs.bars.iloc[:short_rows])
    rows = _first_changed_rows(_replay(short, head).to_numpy(), baseline[:short_rows])
    for col in range(len(rows)):
        if not any(col in leaks.columns(name) for name in grown):
            rows[col] = -1
        elif rows[col] < 0:
            rows[col] = len(inputs.bars)  # no bar shows it, the state still does
    leaks.record(rows, reason=_STATE_GROWS)


def _random_cuts(n: int, fit_rows: int, n_cuts: int, rng: np.random.Generator) -> list[int]:
    """Half the cuts inside the fit window, half from its last bar on (each kind tests something else)."""
    inside = rng.integers(0, max(fit_rows - 1, 1), size=(n_cuts + 1) // 2)
    first_after = max(fit_rows - 1, 0)
    after = rng.integers(first_after, n - 1, size=n_cuts // 2) if first_after < n - 1 else inside[:0]
    return sorted(set(int(c) for c in np.concatenate([inside, after])))


def _round_trip(state: dict) -> dict:
    return json.loads(json.dumps(state))


def _canonical(state: object) -> str:
    return json.dumps(state, sort_keys=True)


def _structure(state: object) -> object:
    """Keys and list lengths of a JSON value; numbers, strings and nulls reduced to their kind."""
    if isinstance(state, dict):
        return {k: _structure(v) for k, v in sorted(state.items())}
    if isinstance(state, list):
        return [_structure(v) for v in state]
    if state is None or isinstance(state, (int, float)):  # a parameter may be null when undefined
        return "number"
    return type(state).__name__


def _replay(pipeline: FeaturePipeline, inputs: FeatureInputs) -> pd.DataFrame:
    return compute_features(pipeline, inputs.data, inputs.bars, inputs.reference_bars, inputs.funding)


def stream_features(pipeline: FeaturePipeline, inputs: FeatureInputs) -> np.ndarray:
    """Feed every event one at a time, merged by timestamp in engine order; return one row per bar.

    Independent of ``compute_features``' per-stream bookkeeping: all events are sorted into one
    sequence (at equal timestamps: trades, quotes, depth, funding, reference bars, then the bar).
    """
    pipeline.reset()
    handlers: list[Callable[[int], None]] = []
    stamps: list[np.ndarray] = []
    data = inputs.data
    if data.trades is not None and len(data.trades):
        t = data.trades
        px, sz, sd = t["price"].to_numpy(), t["size"].to_numpy(), t["side"].to_numpy()
        ts_t = t.index.asi8
        handlers.append(lambda i: pipeline.on_trade(int(ts_t[i]), float(px[i]), float(sz[i]), int(sd[i])))
        stamps.append(ts_t)
    if data.quotes is not None and len(data.quotes):
        q = data.quotes
        bid, ask = q["bid"].to_numpy(), q["ask"].to_numpy()
        bs, az = q["bid_size"].to_numpy(), q["ask_size"].to_numpy()
        ts_q = q.index.asi8
        handlers.append(
            lambda i: pipeline.on_quote(int(ts_q[i]), float(bid[i]), float(ask[i]), float(bs[i]), float(az[i]))
        )
        stamps.append(ts_q)
    if data.depth is not None and len(data.depth):
        dp = data.depth
        bd, ad, ts_d = dp["bid_depth"].to_numpy(), dp["ask_depth"].to_numpy(), dp.index.asi8
        handlers.append(lambda i: pipeline.on_depth(int(ts_d[i]), float(bd[i]), float(ad[i])))
        stamps.append(ts_d)
    if inputs.funding is not None and len(inputs.funding):
        f = inputs.funding
        rate, ts_f = f["rate"].to_numpy(), f.index.asi8
        handlers.append(lambda i: pipeline.on_funding(int(ts_f[i]), float(rate[i])))
        stamps.append(ts_f)
    if inputs.reference_bars is not None and len(inputs.reference_bars):
        ref = bar_events(inputs.reference_bars)
        handlers.append(lambda i: pipeline.on_reference_bar(ref[i]))
        stamps.append(inputs.reference_bars.index.asi8)
    events = bar_events(inputs.bars)
    rows = np.empty((len(events), len(pipeline.names)))

    def on_bar(i: int) -> None:
        rows[i] = pipeline.update(events[i])

    handlers.append(on_bar)
    stamps.append(inputs.bars.index.asi8)

    ts = np.concatenate(stamps)
    kind = np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s in enumerate(stamps)])
    pos = np.concatenate([np.arange(len(s), dtype=np.int64) for s in stamps])
    order = np.lexsort((pos, kind, ts))
    for k, i in zip(kind[order].tolist(), pos[order].tolist()):
        handlers[k](i)
    return rows


def perturb_after(inputs: FeatureInputs, cut: pd.Timestamp, rng: np.random.Generator) -> FeatureInputs:
    """Return ``inputs`` with every value strictly after ``cut`` randomly changed (prices stay valid)."""
    data = inputs.data
    trades = data.trades
    if trades is not None:
        trades = trades.copy()
        after = trades.index > cut
        k = int(after.sum())
        trades.loc[after, "price"] *= np.exp(rng.normal(0, 0.02, k))
        trades.loc[after, "size"] *= rng.uniform(0.2, 5.0, k)
        trades.loc[after, "side"] = np.where(rng.random(k) < 0.5, 1, -1).astype(trades["side"].dtype)
    quotes = data.quotes
    if quotes is not None:
        quotes = quotes.copy()
        after = quotes.index > cut
        k = int(after.sum())
        factor = np.exp(rng.normal(0, 0.02, k))
        quotes.loc[after, "bid"] *= factor
        quotes.loc[after, "ask"] *= factor * (1 + rng.uniform(0, 1e-3, k))
        quotes.loc[after, "bid_size"] *= rng.uniform(0.2, 5.0, k)
        quotes.loc[after, "ask_size"] *= rng.uniform(0.2, 5.0, k)
    depth = data.depth
    if depth is not None:
        depth = depth.copy()
        after = depth.index > cut
        k = int(after.sum())
        depth.loc[after, "bid_depth"] *= rng.uniform(0.2, 5.0, k)
        depth.loc[after, "ask_depth"] *= rng.uniform(0.2, 5.0, k)
    funding = inputs.funding
    if funding is not None:
        funding = funding.copy()
        after = funding.index > cut
        funding.loc[after, "rate"] += rng.normal(0, 1e-4, int(after.sum()))
    return FeatureInputs(
        data=replace(data, trades=trades, quotes=quotes, depth=depth),
        bars=_perturb_bars(inputs.bars, cut, rng),
        reference_bars=_perturb_bars(inputs.reference_bars, cut, rng),
        funding=funding,
    )


def _perturb_bars(bars: pd.DataFrame | None, cut: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame | None:
    if bars is None:
        return None
    bars = bars.copy()
    after = bars.index > cut
    k = int(after.sum())
    factor = np.exp(np.cumsum(rng.normal(0, 0.01, k)))
    for column in ("open", "high", "low", "close"):
        bars.loc[after, column] *= factor
    volume_factor = rng.uniform(0.2, 5.0, k)
    bars.loc[after, "volume"] *= volume_factor
    if "taker_buy_volume" in bars:
        bars.loc[after, "taker_buy_volume"] = bars.loc[after, "volume"] * rng.uniform(0, 1, k)
    return bars


def _first_changed_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column: the first row where the values are not bit-identical (NaN equals NaN), else -1."""
    changed = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return np.where(changed.any(axis=0), changed.argmax(axis=0), -1)


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column: max |a − b| / max(|a|, |b|) (absolute below PARITY_ATOL); inf where NaN-ness differs."""
    both_nan = np.isnan(a) & np.isnan(b)
    one_nan = np.isnan(a) ^ np.isnan(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(a - b)
        scale = np.maximum(np.abs(a), np.abs(b))
        rel = np.where(diff <= PARITY_ATOL, 0.0, diff / scale)
    rel = np.where(both_nan, 0.0, rel)
    rel = np.where(one_nan, np.inf, rel)
    rel = np.where(np.isnan(rel), np.inf, rel)  # inf vs inf of opposite signs, etc.
    return rel.max(axis=0) if len(rel) else np.zeros(a.shape[1])
