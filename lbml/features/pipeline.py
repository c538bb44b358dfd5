"""A scenario's feature plugins combined into one streaming pipeline, plus the batch replay.

``FeaturePipeline.update`` is what the engine calls per bar; ``compute_features`` replays history
through the very same objects, event by event, to build the training matrix. There is no second,
vectorised implementation to drift from the streaming one.
"""

import copy
import ctypes
import hashlib
import json
import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lbml.data.frames import InstrumentData, MarketData
from lbml.errors import PluginError
from lbml.features.base import BarEvent, FeatureInput, FeaturePlugin
from lbml.features.native import compile_plugins
from lbml.plugins import PluginRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSchema:
    """Names, plugin specs and a hash that identifies the feature matrix layout."""

    names: tuple[str, ...]
    plugins: tuple[dict[str, Any], ...]

    @property
    def hash(self) -> str:
        canonical = json.dumps(
            {"names": self.names, "plugins": self.plugins}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "plugins": list(self.plugins), "hash": self.hash}


class FeaturePipeline:
    """Feature plugins run together; the event-dispatch order is the contract of ``base.py``."""

    def __init__(self, plugins: Sequence[FeaturePlugin], *, compiled: bool = True) -> None:
        if not plugins:
            raise PluginError("the scenario enables no usable feature plugin")
        self.plugins = tuple(plugins)
        names: list[str] = []
        for plugin in self.plugins:
            for name in plugin.output_names():
                if name in names:
                    raise PluginError(f"feature {name!r} is produced by two plugins")
                names.append(name)
        self.names = tuple(names)
        self.inputs = frozenset().union(*(p.inputs for p in self.plugins))
        self._trade_sinks = [p for p in self.plugins if FeatureInput.TRADES in p.inputs]
        self._quote_sinks: list[Any] = [p for p in self.plugins if FeatureInput.QUOTES in p.inputs]
        self._ref_sinks: list[Any] = [p for p in self.plugins if FeatureInput.REFERENCE in p.inputs]
        self._funding_sinks: list[Any] = [p for p in self.plugins if FeatureInput.FUNDING in p.inputs]
        self._depth_sinks: list[Any] = [p for p in self.plugins if FeatureInput.DEPTH in p.inputs]
        self._updates = tuple(p.update for p in self.plugins)
        # The built-in plugins with a compiled kernel run in one native call per bar
        # (``lbml.features.native``); the others (third-party plugins) run in Python alongside,
        # each packing its values at its own offset of the same buffer.
        offsets, start = [], 0
        for plugin in self.plugins:
            offsets.append(start)
            start += len(plugin.output_names())
        self._offsets = tuple(offsets)
        self._native = compile_plugins(self.plugins, offsets) if compiled else None
        if self._native is not None:
            self._python_parts = self._python_parts_of(self._native)
            # Events for compiled plugins go to the compiled set (queued there, delivered with the bar).
            native = set(map(id, self._native.plugins))
            for attr, method in (("_ref_sinks", "on_reference_bar"), ("_quote_sinks", "on_quote"),
                                 ("_depth_sinks", "on_depth"), ("_funding_sinks", "on_funding")):
                if method in self._native.events:
                    others = [p for p in getattr(self, attr) if id(p) not in native]
                    setattr(self, attr, [self._native, *others])
        # An input with a single sink (the usual case) goes straight to that plugin's method:
        # one Python call less per tick, quote or snapshot (unless a subclass overrides the method).
        for method, sinks in (
            ("on_trade", self._trade_sinks),
            ("on_quote", self._quote_sinks),
            ("on_reference_bar", self._ref_sinks),
            ("on_funding", self._funding_sinks),
            ("on_depth", self._depth_sinks),
        ):
            if len(sinks) == 1 and getattr(type(self), method) is getattr(FeaturePipeline, method):
                setattr(self, method, getattr(sinks[0], method))
        self._rebind(bytearray(8 * len(self.names)))

    def _python_parts_of(self, native: Any) -> tuple[tuple[Any, int, Any], ...]:
        """(packer, byte offset, update) of every plugin not in the compiled set."""
        compiled = set(map(id, native.plugins))
        return tuple(
            (struct.Struct(f"={len(p.output_names())}d").pack_into, 8 * o, p.update)
            for p, o in zip(self.plugins, self._offsets)
            if id(p) not in compiled
        )

    @property
    def compiled_plugins(self) -> tuple[str, ...]:
        """Names of the plugins running in the compiled kernels (empty: all run in Python)."""
        return tuple(p.name for p in self._native.plugins) if self._native is not None else ()

    def _rebind(self, raw: bytearray) -> None:
        self._bind_buffer(raw)
        # Address of the buffer's memory for the compiled kernels (a bytearray never resized).
        self._out = ctypes.addressof(ctypes.c_char.from_buffer(self._raw))

    def _bind_buffer(self, raw: bytearray) -> None:
        # ``update`` packs the plugins' values straight into the buffer's memory: one C call, about
        # twice as fast as numpy converting a list of Python floats. ``_buffer`` is a view of
        # ``_raw``: the two must always be rebuilt together (see ``__deepcopy__``).
        self._raw = raw
        self._pack = struct.Struct(f"={len(self.names)}d").pack_into
        self._buffer = np.frombuffer(self._raw, dtype=np.float64)

    def __deepcopy__(self, memo: dict[int, Any]) -> "FeaturePipeline":
        """Return an independent pipeline in the same state (e.g. one per backtest of a sweep).

        A plain deep copy would give the copy its own ``_raw`` and a separate ``_buffer`` array
        that no longer views it: ``update`` would pack into one and return the other, frozen.
        Plugins and the bound methods that dispatch to them are deep-copied together, so the
        copy's methods reach the copy's plugins.
        """
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key not in ("_raw", "_pack", "_buffer", "_out"):
                setattr(clone, key, copy.deepcopy(value, memo))
        clone._rebind(bytearray(self._raw))
        return clone

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the packer and the buffer view (rebuilt on load), e.g. to ship the pipeline to
        a Dask worker (``lbml.sweeps``)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_raw", "_pack", "_buffer", "_out", "_python_parts")}
        state["_raw"] = bytes(self._raw)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        raw = state.pop("_raw")
        self.__dict__.update(state)
        if self._native is not None:
            self._python_parts = self._python_parts_of(self._native)
        self._rebind(bytearray(raw))

    @property
    def warmup_bars(self) -> int:
        return max(p.warmup_bars() for p in self.plugins)

    def like(self, plugins: Sequence[FeaturePlugin]) -> "FeaturePipeline":
        """Return a pipeline of ``plugins`` laid out as this one (e.g. with the same sequence window)."""
        return FeaturePipeline(plugins)

    def schema(self) -> FeatureSchema:
        return FeatureSchema(self.names, tuple(p.spec() for p in self.plugins))

    def reset(self) -> None:
        for plugin in self.plugins:
            plugin.reset()
        if self._native is not None:
            self._native.reset()

    # -- streaming ------------------------------------------------------------------------------
    def on_trade(self, ts: int, price: float, size: float, side: int) -> None:
        for plugin in self._trade_sinks:
            plugin.on_trade(ts, price, size, side)

    def on_quote(self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        for plugin in self._quote_sinks:
            plugin.on_quote(ts, bid, ask, bid_size, ask_size)

    def on_reference_bar(self, bar: BarEvent) -> None:
        for plugin in self._ref_sinks:
            plugin.on_reference_bar(bar)

    def on_funding(self, ts: int, rate: float) -> None:
        for plugin in self._funding_sinks:
            plugin.on_funding(ts, rate)

    def on_depth(self, ts: int, bid_depth: float, ask_depth: float) -> None:
        for plugin in self._depth_sinks:
            plugin.on_depth(ts, bid_depth, ask_depth)

    def update(self, bar: BarEvent) -> np.ndarray:
        """Return the feature vector at ``bar``'s close (a reused buffer: copy to keep it)."""
        native = self._native
        if native is not None:
            native.step(bar, self._out)
            raw = self._raw
            for pack, offset, update in self._python_parts:
                pack(raw, offset, *update(bar))
            return self._buffer
        values: list[float] = []
        extend = values.extend
        for update in self._updates:
            extend(update(bar))
        self._pack(self._raw, 0, *values)
        return self._buffer

    # -- fitted state ---------------------------------------------------------------------------
    def learning_plugins(self) -> tuple[FeaturePlugin, ...]:
        """Return the plugins that learn parameters in ``fit`` (refitted per CV fold)."""
        return tuple(p for p in self.plugins if p.learns_parameters())

    def fit(self, bars: pd.DataFrame) -> None:
        for plugin in self.plugins:
            plugin.fit(bars)
        if self._native is not None:
            self._native.reset()

    def fitted_state(self) -> dict[str, Any]:
        return {p.name: p.fitted_state() for p in self.plugins}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        for plugin in self.plugins:
            plugin.load_fitted_state(state.get(plugin.name, {}))
        if self._native is not None:
            self._native.reset()


def available_inputs(market: MarketData, symbol: str, reference: str | None) -> frozenset[FeatureInput]:
    """Return the inputs the data can feed for ``symbol``."""
    data = market[symbol]
    found = {FeatureInput.BARS}
    if data.has_ticks:
        # The engine path derives per-bar taker-buy volume from the same ticks.
        found |= {FeatureInput.TRADES, FeatureInput.TAKER_BUY}
    if data.quotes is not None and len(data.quotes):
        found.add(FeatureInput.QUOTES)
    if data.depth is not None and len(data.depth):
        found.add(FeatureInput.DEPTH)
    if reference is not None and reference in market:
        found.add(FeatureInput.REFERENCE)
    if symbol in market.funding or (reference is not None and reference in market.funding):
        found.add(FeatureInput.FUNDING)
    return frozenset(found)


def build_pipeline(
    registry: PluginRegistry,
    specs: Iterable[Any],
    available: frozenset[FeatureInput] | None = None,
) -> FeaturePipeline:
    """Instantiate the scenario's feature plugins; leave out (with a warning) those lacking inputs."""
    plugins: list[FeaturePlugin] = []
    for spec in specs:
        cls = registry.feature(spec.plugin)
        plugin = cls(**spec.params)
        missing = plugin.inputs - available if available is not None else frozenset()
        if missing:
            log.warning(
                "feature plugin %s declared unavailable: data has no %s",
                plugin.name,
                ", ".join(sorted(m.value for m in missing)),
            )
            continue
        plugins.append(plugin)
    return FeaturePipeline(plugins)


def bar_events(bars: pd.DataFrame) -> list[BarEvent]:
    """Turn a canonical bar frame into ``BarEvent`` objects."""
    # Python ints and floats, as the engine passes them (numpy scalars would make every plugin's
    # arithmetic several times slower, with the same values).
    ts = bars.index.asi8.tolist()
    cols = [bars[c].to_numpy(np.float64).tolist() for c in ("open", "high", "low", "close", "volume")]
    if "taker_buy_volume" not in bars:
        return [BarEvent(t, o, h, lo, c, v) for t, o, h, lo, c, v in zip(ts, *cols)]
    taker = bars["taker_buy_volume"].to_numpy(np.float64).tolist()
    return [BarEvent(t, o, h, lo, c, v, tb) for t, o, h, lo, c, v, tb in zip(ts, *cols, taker)]


def compute_features(
    pipeline: FeaturePipeline,
    data: InstrumentData,
    bars: pd.DataFrame,
    reference_bars: pd.DataFrame | None = None,
    funding: pd.DataFrame | None = None,
    *,
    reset: bool = True,
) -> pd.DataFrame:
    """Replay history through the streaming pipeline and return one feature row per bar.

    Events are dispatched in the engine's order: every trade, quote, depth snapshot, funding
    settlement and reference bar with a timestamp at or before a bar's close, then the bar itself.
    Events after the last bar are not dispatched, so a replay up to a bar's close continued with
    ``reset=False`` by the events after it equals one replay of both.
    """
    if reset:
        pipeline.reset()
        if _replays_natively(pipeline):  # a continuation runs bar by bar (the batch resets Python plugins)
            return _native_replay(pipeline, data, bars, reference_bars, funding)
    streams: list[_EventStream] = []
    if pipeline._trade_sinks and data.trades is not None:
        t = data.trades
        side = t["side"].to_numpy().astype(np.int64)
        rows = _columns(t.index.asi8, t["price"], t["size"], side)
        streams.append(_EventStream(t.index.asi8, pipeline.on_trade, rows))
    if pipeline._quote_sinks and data.quotes is not None:
        q = data.quotes
        rows = _columns(q.index.asi8, *(q[c] for c in ("bid", "ask", "bid_size", "ask_size")))
        streams.append(_EventStream(q.index.asi8, pipeline.on_quote, rows))
    if pipeline._depth_sinks and data.depth is not None:
        d = data.depth
        rows = _columns(d.index.asi8, d["bid_depth"], d["ask_depth"])
        streams.append(_EventStream(d.index.asi8, pipeline.on_depth, rows))
    if pipeline._funding_sinks and funding is not None and len(funding):
        rows = _columns(funding.index.asi8, funding["rate"])
        streams.append(_EventStream(funding.index.asi8, pipeline.on_funding, rows))
    if pipeline._ref_sinks and reference_bars is not None:
        ref_events = bar_events(reference_bars)
        rows = lambda lo, hi: [(e,) for e in ref_events[lo:hi]]  # noqa: E731
        streams.append(_EventStream(reference_bars.index.asi8, pipeline.on_reference_bar, rows))

    events = bar_events(bars)
    bar_ts = bars.index.asi8
    # ends[row]: per stream, the events with a timestamp at or before bar row's close.
    ends = [np.searchsorted(s.stamps, bar_ts, side="right").tolist() for s in streams]
    runs = [s.run_to for s in streams]
    update = pipeline.update
    out = np.empty((len(events), len(pipeline.names)), dtype=np.float64)
    for row, bar in enumerate(events):
        for run_to, stream_ends in zip(runs, ends):
            run_to(stream_ends[row])
        out[row] = update(bar)
    return pd.DataFrame(out, index=bars.index, columns=list(pipeline.names))


_DISPATCH = ("update", "on_trade", "on_quote", "on_depth", "on_funding", "on_reference_bar")


def _replays_natively(pipeline: FeaturePipeline) -> bool:
    """Whether the pipeline has compiled plugins and dispatches as ``FeaturePipeline`` does."""
    return pipeline._native is not None and all(
        getattr(type(pipeline), m) is getattr(FeaturePipeline, m) for m in _DISPATCH
    )


def _native_replay(
    pipeline: FeaturePipeline,
    data: InstrumentData,
    bars: pd.DataFrame,
    reference_bars: pd.DataFrame | None,
    funding: pd.DataFrame | None,
) -> pd.DataFrame:
    """``compute_features`` with the compiled plugins' replay in one native call.

    The same kernels, events and order as the per-bar path, looped in C. Plugins share no state,
    so the Python plugins (third-party ones) are then replayed on their own, through a pipeline
    of just them, over the same events, and their columns filled in.
    """
    native = pipeline._native
    assert native is not None
    bar_ts = bars.index.asi8
    streams: dict[str, tuple[np.ndarray, ...]] = {}

    def add(method: str, frame: pd.DataFrame | None, columns: Sequence[str]) -> None:
        if method not in native.events or frame is None or not len(frame):
            return
        stamps = frame.index.asi8
        ends = np.searchsorted(stamps, bar_ts, side="right")
        streams[method] = (stamps, *(frame[c].to_numpy(np.float64) for c in columns), ends)

    add("on_quote", data.quotes, ("bid", "ask", "bid_size", "ask_size"))
    add("on_depth", data.depth, ("bid_depth", "ask_depth"))
    add("on_funding", funding, ("rate",))
    add("on_reference_bar", reference_bars, ("close",))
    out = np.full((len(bars), len(pipeline.names)), np.nan, dtype=np.float64)
    native.replay(bars, out, streams)
    compiled = set(map(id, native.plugins))
    rest = [(p, o) for p, o in zip(pipeline.plugins, pipeline._offsets) if id(p) not in compiled]
    if rest:
        values = compute_features(FeaturePipeline([p for p, _ in rest], compiled=False), data, bars,
                                  reference_bars, funding).to_numpy()
        columns = [o + j for p, o in rest for j in range(len(p.output_names()))]
        out[:, columns] = values
    if len(out):
        pipeline._buffer[:] = out[-1]  # as after the last ``update``
    return pd.DataFrame(out, index=bars.index, columns=list(pipeline.names))


def _columns(*columns: Any):
    """Rows ``lo:hi`` of the columns as tuples of Python scalars (the types the engine passes)."""
    arrays = [np.asarray(c) for c in columns]
    return lambda lo, hi: list(zip(*(a[lo:hi].tolist() for a in arrays)))


class _EventStream:
    """One input stream of the replay, handed to its sink in timestamp order.

    ``rows_of(lo, hi)`` gives the sink's arguments for events ``lo:hi``; they are built a chunk at
    a time rather than element by element.
    """

    _CHUNK = 65_536

    def __init__(self, stamps: np.ndarray, call: Any, rows_of: Any) -> None:
        self.stamps = stamps
        self._call = call
        self._rows_of = rows_of
        self._pos = self._lo = self._hi = 0
        self._rows: list[tuple] = []

    def run_to(self, end: int) -> None:
        """Dispatch every event before index ``end`` not dispatched yet."""
        pos = self._pos
        if pos >= end:
            return
        call = self._call
        while pos < end:
            if pos >= self._hi:
                self._lo, self._hi = pos, min(pos + self._CHUNK, len(self.stamps))
                self._rows = self._rows_of(self._lo, self._hi)
            stop = min(end, self._hi)
            lo = self._lo
            for args in self._rows[pos - lo : stop - lo]:
                call(*args)
            pos = stop
        self._pos = pos
