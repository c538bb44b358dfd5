"""Notice feature plugins that open files themselves (``lbml features check``).

A feature may only use the events the pipeline hands it: those are what the look-ahead check
perturbs. A plugin that opens a file inside ``__init__``, ``fit``, ``update`` or an ``on_*`` handler
(its own copy of the scenario's data, a side file, the scenario file) reads something the check
cannot perturb, so the check cannot vouch for it and says so.

The watch is a CPython audit hook (``sys.addaudithook``) on the ``open`` event, which ``open``,
``io.open``, ``os.open``, pathlib, pandas' readers and NumPy's loaders raise. A hook cannot be
removed, so it is installed once, on the first watch, and does nothing outside a ``watch_file_reads``
block (a context variable). It attributes an open to the innermost ``FeaturePlugin`` method on the
call stack, unless an import lies in between (a library reading its caches as it loads). Not seen: files opened by native code without Python's ``open`` (``pyarrow.parquet.
read_table`` on a path, a C extension), and Python-level imports and package data, which are
ignored on purpose.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from lbml.features.base import BarEvent, FeaturePlugin

_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pyd", ".pth", ".dylib", ".dll")
_SYSTEM_DIRS = ("/proc/", "/sys/", "/dev/")
_MAX_FRAMES = 64


@dataclass(frozen=True)
class FileRead:
    """One file a plugin opened: where, and the bar it was processing (None outside ``update``)."""

    plugin: str
    version: str
    path: str
    method: str
    bar_ts: int | None


_sink: ContextVar[list[FileRead] | None] = ContextVar("lbml_feature_file_reads", default=None)
_installed = False


@contextmanager
def watch_file_reads() -> Iterator[list[FileRead]]:
    """Collect the files feature plugins open inside the block (in the current thread)."""
    global _installed
    if not _installed:
        sys.addaudithook(_on_audit)
        _installed = True
    reads: list[FileRead] = []
    token = _sink.set(reads)
    try:
        yield reads
    finally:
        _sink.reset(token)


def _on_audit(event: str, args: tuple) -> None:
    if event != "open":
        return
    reads = _sink.get()
    if reads is None or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
        if _ignored(path):
            return
        found = _plugin_frame(sys._getframe(1))
        if found is not None:
            plugin, method, bar_ts = found
            reads.append(FileRead(plugin.name, str(plugin.version), path, method, bar_ts))
    except Exception:  # an audit hook must never break the operation it watches
        return


def _ignored(path: str) -> bool:
    if path.endswith(_CODE_SUFFIXES) or "__pycache__" in path or path.startswith(_SYSTEM_DIRS):
        return True
    prefixes = {os.path.abspath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(path.startswith(p) for p in prefixes)


def _plugin_frame(frame) -> tuple[FeaturePlugin, str, int | None] | None:
    for _ in range(_MAX_FRAMES):
        if frame is None or frame.f_code.co_filename.startswith("<frozen importlib"):
            return None  # not plugin code, or a module the plugin imports initialising itself
        owner = frame.f_locals.get("self")
        if isinstance(owner, FeaturePlugin):
            bar = next((v for v in frame.f_locals.values() if isinstance(v, BarEvent)), None)
            return owner, frame.f_code.co_name, None if bar is None else bar.ts
        frame = frame.f_back
    return None
