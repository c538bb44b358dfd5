"""Compiled incremental state for the built-in feature plugins: one native call per bar.

The Python plugins stay the reference and the plugin API. When a pipeline is built, the plugins
that have a kernel here (the built-in classes themselves, not subclasses, which may override
``update``) are handed to one :class:`CompiledFeatures` set: its ``step`` runs all of them for a
bar in a single C call that writes their values straight into the pipeline's output buffer. The
other plugins (third-party ones, and built-ins without a kernel) run in Python alongside, in the
same bar, into the same buffer. Training replay (``compute_features``), the backtest engine and the
paper trader all call ``FeaturePipeline.update``, so they share this one path.

The C source (``lbml.features.native_source``) is built on first use with the system C compiler,
as the compiled trees are (``lbml.models.compiled``): ``-O2 -ffp-contract=off``, no
``-ffast-math``, into the per-user cache keyed by the SHA-256 of source and options, and loaded
through ``ctypes``. Every kernel keeps the Python code's floating-point operations and their order,
so the values are equal with ``==`` (tests compare every feature on synthetic and real klines).
Without a compiler (or if the build fails) the pipeline runs every plugin in Python and says so in
one log line per process.

Events (quotes, depth snapshots, funding, reference bars) for compiled plugins are appended to two
arrays and handed to the kernels, in arrival order, by the next bar's native call: a ctypes call
per event would cost several times the Python plugin's method. When every plugin of a pipeline is
compiled, ``compute_features`` runs the whole replay (events and bars, in the same order) in one
native call.

Every kernel's state lives in one arena (a numpy byte array, offsets instead of pointers): a
deep copy or a pickle of the pipeline copies it like any other array.
"""

import ctypes
import logging
import math
import os
import threading
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lbml.features.base import BarEvent, FeaturePlugin
from lbml.features.native_source import SOURCE
from lbml.native_build import CompileUnavailable, build_shared_library, default_cache_dir

log = logging.getLogger(__name__)

COMPILER_OPTIONS = ("-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c99")
_CACHE_VERSION = "1"
_ABI = 3
_MAX_PLUGINS = 64  # MAXP in the C header


def _core(p: FeaturePlugin) -> list[float]:
    q = p.params
    return [len(q.return_lags), *q.return_lags, q.vol_window, q.ema_period, q.volume_window]


def _technical(p: FeaturePlugin) -> list[float]:
    q = p.params
    return [*q.ema_periods, q.rsi_period, q.macd_fast, q.macd_slow, q.macd_signal, q.bb_period, float(q.bb_k)]


def _volatility(p: FeaturePlugin) -> list[float]:
    from plugins import features_volatility as fv

    q = p.params
    g = p._garch or {}  # unfitted: NaN parameters (``step`` refuses to run, as ``update`` does)
    garch = [g.get(k, math.nan) for k in ("mu", "omega", "alpha", "beta", "initial_variance", "scale")]
    return [q.window, q.drawdown_window, *garch, fv._LN2, fv._GK_C]


def _lagged(p: FeaturePlugin) -> list[float]:
    from plugins import features_lagged as fl

    q = p.params
    return [
        len(q.return_windows), *q.return_windows,
        len(q.log_return_windows), *q.log_return_windows,
        len(q.std_windows), *q.std_windows,
        q.volume_window, fl._TWO_PI,
    ]


def _order_flow(p: FeaturePlugin) -> list[float]:
    from plugins import features_microstructure as fm

    q = p.params
    return [q.flow_window, q.bvc_window, q.vpin_buckets, float(q.vpin_bucket_bars), q.sizing_window,
            q.illiquidity_window, fm._SQRT2]


def _cross_asset(p: FeaturePlugin) -> list[float]:
    q = p.params
    return [q.window, len(q.lags), *q.lags]


def _no_params(p: FeaturePlugin) -> list[float]:
    return []


def _depth(p: FeaturePlugin) -> list[float]:
    return [p.params.volume_window]


# (module, class, version) of a built-in plugin -> (kernel id in the C source, its parameter list).
# A plugin whose ``version`` moved on (its outputs changed) runs in Python until its kernel is
# ported again: a kernel never computes an older version's features.
KERNELS: dict[tuple[str, str, str], tuple[int, Callable[[FeaturePlugin], list[float]]]] = {
    ("plugins.features_core", "CoreFeatures", "2"): (1, _core),
    ("plugins.features_technical", "TechnicalFeatures", "2"): (2, _technical),
    ("plugins.features_volatility", "VolatilityFeatures", "2"): (3, _volatility),
    ("plugins.features_lagged", "LaggedFeatures", "1"): (4, _lagged),
    ("plugins.features_microstructure", "OrderFlowFeatures", "1"): (5, _order_flow),
    ("plugins.features_cross_asset", "CrossAssetFeatures", "1"): (6, _cross_asset),
    ("plugins.features_microstructure", "QuoteFeatures", "1"): (7, _no_params),
    ("plugins.features_microstructure", "DepthFeatures", "1"): (8, _depth),
    ("plugins.features_cross_asset", "FundingFeatures", "1"): (9, _no_params),
}
# event method -> the kernel that consumes it (events are queued and delivered with the next bar)
EVENT_KINDS = {"on_reference_bar": 6, "on_quote": 7, "on_depth": 8, "on_funding": 9}
_LEARNS = {3}  # kernels whose parameters come from a fit (GARCH): refreshed when the plugin refits


def kernel_of(plugin: FeaturePlugin) -> tuple[int, Callable[[FeaturePlugin], list[float]]] | None:
    """Return the kernel of ``plugin``'s exact class, or None (the plugin then runs in Python)."""
    cls = type(plugin)
    return KERNELS.get((cls.__module__, cls.__qualname__, str(cls.version)))


class Library:
    """The loaded kernel library and its typed entry points."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.lbml_features_abi.restype = ctypes.c_int64
        if lib.lbml_features_abi() != _ABI:
            raise CompileUnavailable(f"{path}: kernel ABI {lib.lbml_features_abi()}, expected {_ABI}")
        lib.lbml_features_size.restype = ctypes.c_int64
        lib.lbml_features_size.argtypes = (ctypes.c_void_p,)
        lib.lbml_features_init.restype = None
        lib.lbml_features_init.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        step = lib.lbml_features_step
        step.restype = None
        step.argtypes = (ctypes.c_void_p, ctypes.c_int64, *([ctypes.c_double] * 6), ctypes.c_void_p)
        d, i64, ptr = ctypes.c_double, ctypes.c_int64, ctypes.c_void_p
        step_events = lib.lbml_features_step_events
        step_events.restype = None
        step_events.argtypes = (ptr, ptr, ptr, i64, i64, *([d] * 6), ptr)
        self.step_events = step_events
        replay = lib.lbml_features_replay
        replay.restype = None
        replay.argtypes = (ptr, i64, *([ptr] * 7), ptr, i64, ptr, ptr, ptr, ptr)
        self.size, self.init, self.step, self.replay = lib.lbml_features_size, lib.lbml_features_init, step, replay
        self._lib = lib


_LOADED: dict[tuple[str, str], "Library | CompileUnavailable"] = {}
_LOCK = threading.Lock()


def build_library(cache_dir: Path | None = None, *, compiler: str = "cc") -> Path:
    """Compile the kernels (or find them in the cache) and return the shared library's path.

    Raises
    ------
    CompileUnavailable
        When the C compiler is missing or the build fails.
    """
    return build_shared_library(SOURCE, "features", COMPILER_OPTIONS, "the feature kernels",
                                cache_dir=cache_dir, compiler=compiler, version=_CACHE_VERSION)


def load_library(cache_dir: Path | None = None, *, compiler: str = "cc") -> Library:
    """Return the kernel library, built once per process and cache folder.

    Raises
    ------
    CompileUnavailable
        When it cannot be built or loaded (logged once per process and cause).
    """
    key = (str(cache_dir or default_cache_dir()), compiler)
    with _LOCK:
        found = _LOADED.get(key)
        if found is None:
            try:
                found = Library(build_library(cache_dir, compiler=compiler))
            except (CompileUnavailable, OSError) as exc:
                found = exc if isinstance(exc, CompileUnavailable) else CompileUnavailable(str(exc))
                log.warning("compiled features unavailable, running every feature plugin in Python: %s", found)
            _LOADED[key] = found
    if isinstance(found, CompileUnavailable):
        raise found
    return found


_UNCOPIED = ("_library", "_step", "_step_events", "_ts_append", "_values_extend", "_addr")


class CompiledFeatures:
    """The compiled plugins of one pipeline: their state in one arena, one ``step`` per bar.

    Parameters
    ----------
    library : Library
        The loaded kernels.
    plugins : sequence of (FeaturePlugin, int)
        Each plugin with a kernel and the index of its first output in the pipeline's buffer.
    """

    def __init__(self, library: Library, plugins: Sequence[tuple[FeaturePlugin, int]]) -> None:
        if not plugins or len(plugins) > _MAX_PLUGINS:
            raise ValueError(f"a compiled set holds 1..{_MAX_PLUGINS} plugins, got {len(plugins)}")
        self._library = library
        self.plugins = tuple(p for p, _ in plugins)
        self.offsets = tuple(int(o) for _, o in plugins)
        self._kinds = tuple(kernel_of(p)[0] for p in self.plugins)  # type: ignore[index]
        # the event methods this set consumes (``on_quote`` ...)
        self.events = frozenset(m for m, k in EVENT_KINDS.items() if k in self._kinds)
        self._arena = np.zeros(0, dtype=np.uint8)
        # Events since the last bar: timestamps and (kind, 4 values) per event, handed over with the
        # bar in one native call (a native call per quote or snapshot costs several times more).
        self._event_ts = array("q")
        self._event_values = array("d")
        self.reset()

    # -- configuration -------------------------------------------------------------------------
    def _config(self) -> np.ndarray:
        cfg: list[float] = [len(self.plugins)]
        for plugin, offset in zip(self.plugins, self.offsets):
            kind, params = kernel_of(plugin)  # type: ignore[misc]
            values = [float(v) for v in params(plugin)]
            cfg += [kind, offset, len(values), *values]
        return np.asarray(cfg, dtype=np.float64)

    def _fitted(self) -> tuple[Any, ...]:
        """The fitted-parameter objects the kernels were configured with (identity-compared)."""
        return tuple(getattr(p, "_garch", None) if k in _LEARNS else None for p, k in zip(self.plugins, self._kinds))

    def reset(self) -> None:
        """Forget all streaming state and reread the plugins' parameters (e.g. after a fit)."""
        cfg = self._config()
        size = int(self._library.size(cfg.ctypes.data))
        if len(self._arena) != size:
            self._arena = np.zeros(size, dtype=np.uint8)
        self._library.init(self._arena.ctypes.data, cfg.ctypes.data, -1)
        del self._event_ts[:]
        del self._event_values[:]
        self._seen = self._fitted()
        self._learning = tuple(
            (i, p) for i, (p, k) in enumerate(zip(self.plugins, self._kinds)) if k in _LEARNS
        )
        self._bind()

    def _bind(self) -> None:
        self._addr = self._arena.ctypes.data
        self._step = self._library.step
        self._step_events = self._library.step_events
        self._ts_append = self._event_ts.append
        self._values_extend = self._event_values.extend

    def _refresh(self, bar: BarEvent) -> None:
        """A learning plugin was refitted since the kernels were configured: restart its state.

        ``fit`` and ``load_fitted_state`` reset the Python plugin's streaming state, so the kernel
        restarts that plugin only, with the new parameters; unfitted, the plugin's own ``update``
        raises its error.
        """
        cfg = self._config()
        for i, plugin in self._learning:
            if plugin._garch is None:
                plugin.update(bar)  # type: ignore[arg-type]  # raises: GARCH is not fitted
            if plugin._garch is not self._seen[i]:
                self._library.init(self._addr, cfg.ctypes.data, i)
        self._seen = self._fitted()

    # -- streaming ---------------------------------------------------------------------------
    def _refresh_if_needed(self, bar: BarEvent | None) -> None:
        for i, plugin in self._learning:
            fitted = plugin._garch
            if fitted is None or fitted is not self._seen[i]:
                self._refresh(bar)
                return

    def step(self, bar: BarEvent, out: int) -> None:
        """Run every compiled plugin on ``bar``, writing their values at address ``out``."""
        for i, plugin in self._learning:
            fitted = plugin._garch
            if fitted is None or fitted is not self._seen[i]:  # unfitted (raises) or refitted
                self._refresh(bar)
                break
        stamps = self._event_ts
        n = len(stamps)
        if n:
            values = self._event_values
            self._step_events(self._addr, stamps.buffer_info()[0], values.buffer_info()[0], n, bar.ts, bar.open,
                              bar.high, bar.low, bar.close, bar.volume, bar.taker_buy_volume, out)
            del stamps[:]
            del values[:]
        else:
            self._step(self._addr, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume,
                       bar.taker_buy_volume, out)

    # Events are queued and delivered, in arrival order, by the next ``step`` (nothing observes the
    # compiled state in between).
    def on_reference_bar(self, bar: BarEvent) -> None:
        self._ts_append(bar.ts)
        self._values_extend((6.0, bar.close, 0.0, 0.0, 0.0))

    def on_quote(self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        self._ts_append(ts)
        self._values_extend((7.0, bid, ask, bid_size, ask_size))

    def on_depth(self, ts: int, bid_depth: float, ask_depth: float) -> None:
        self._ts_append(ts)
        self._values_extend((8.0, bid_depth, ask_depth, 0.0, 0.0))

    def on_funding(self, ts: int, rate: float) -> None:
        self._ts_append(ts)
        self._values_extend((9.0, rate, 0.0, 0.0, 0.0))

    def replay(self, bars: Any, out: np.ndarray, streams: dict[str, tuple[np.ndarray, ...]]) -> None:
        """Run the whole batch replay in one native call (every plugin of the pipeline compiled).

        ``bars`` is the canonical bar frame; ``out`` the C-contiguous (rows, width) result;
        ``streams`` maps ``on_quote``/``on_depth``/``on_funding``/``on_reference_bar`` to
        (timestamps, value columns..., per-bar end index), as ``compute_features`` dispatches them.
        """
        self._refresh_if_needed(None)
        n = len(bars)
        keep: list[Any] = []

        def column(values: Any, dtype: Any = np.float64) -> int:
            array = np.ascontiguousarray(values, dtype=dtype)
            keep.append(array)
            return array.ctypes.data

        ts = column(bars.index.asi8, np.int64)
        cols = [column(bars[c].to_numpy(np.float64)) for c in ("open", "high", "low", "close", "volume")]
        taker = bars["taker_buy_volume"].to_numpy(np.float64) if "taker_buy_volume" in bars else np.full(n, np.nan)
        pointers = []
        for method in ("on_quote", "on_depth", "on_funding", "on_reference_bar"):
            found = streams.get(method)
            if found is None:
                pointers.append(None)
                continue
            stamps, *values, ends = found
            fields = [len(stamps), column(stamps, np.int64)]
            fields += [column(v) for v in values] + [0] * (4 - len(values)) + [column(ends, np.int64)]
            record = (ctypes.c_int64 * 7)(*fields)
            keep.append(record)
            pointers.append(ctypes.addressof(record))
        assert out.flags.c_contiguous and out.dtype == np.float64
        self._library.replay(self._addr, n, ts, *cols, column(taker), out.ctypes.data, out.shape[1], *pointers)

    # -- copies ------------------------------------------------------------------------------
    def __deepcopy__(self, memo: dict[int, Any]) -> "CompiledFeatures":
        import copy

        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key in _UNCOPIED:
                setattr(clone, key, value)
            elif key != "_seen":
                setattr(clone, key, copy.deepcopy(value, memo))
        clone._seen = clone._fitted()  # the copied plugins' parameter objects, in the same state
        clone._bind()
        return clone

    def __getstate__(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.__dict__.items() if k not in _UNCOPIED and k != "_seen"
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._library = load_library(compiler=default_compiler())  # raises CompileUnavailable if it cannot be built
        self._seen = self._fitted()
        self._bind()


def default_compiler() -> str:
    """The C compiler: ``$CC`` (a program name) when set, else ``cc``."""
    return os.environ.get("CC") or "cc"


def compile_plugins(
    plugins: Sequence[FeaturePlugin],
    offsets: Sequence[int],
    *,
    cache_dir: Path | None = None,
    compiler: str | None = None,
) -> CompiledFeatures | None:
    """Return the compiled set of the plugins that have a kernel, or None (none has, or no compiler).

    ``offsets[i]`` is the index of ``plugins[i]``'s first output in the pipeline's buffer.
    """
    compiler = compiler or default_compiler()
    chosen = [(p, o) for p, o in zip(plugins, offsets) if kernel_of(p) is not None][:_MAX_PLUGINS]
    if not chosen:
        return None
    try:
        library = load_library(cache_dir, compiler=compiler)
    except CompileUnavailable:
        return None
    return CompiledFeatures(library, chosen)
