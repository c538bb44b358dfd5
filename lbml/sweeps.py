"""Independent research tasks (walk-forward periods, CV folds, robustness variants) on Dask.

A :class:`Sweep` maps a function over items. :class:`SerialSweep` runs them here, one after the
other; :class:`DaskSweep` submits one task per item to a ``dask.distributed`` cluster: a
``LocalCluster`` of worker processes on this machine (``--scheduler local``) or a running scheduler
(``--scheduler tcp://host:8786``) whose workers may sit on other machines. The arguments every task
shares (market data, feature pipeline, model files) are scattered to the workers once.

Results are the serial run's, bit for bit: each task is a pure function of its inputs (seeded
models, no shared state), results come back in item order, and the caller combines them exactly as
the serial loop does. Tasks ship their inputs and return their outputs (model files as bytes), so
remote workers need lbml installed but no shared file system.

Why Dask and not Ray: Dask is in the dependencies and its ``LocalCluster`` starts in-process from
Python without a separate runtime; Ray is not installed on the project's machines, so the two could
not be measured against each other here (README "Sweeps on Dask").
"""

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from lbml.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Sweep(Protocol):
    def map(self, fn: Callable[..., R], items: Sequence[T], **shared: Any) -> list[R]:
        """Return ``[fn(item, **shared) for item in items]``, in item order."""


@dataclass(frozen=True)
class SerialSweep:
    """Run every task here, in order."""

    def map(self, fn: Callable[..., R], items: Sequence[T], **shared: Any) -> list[R]:
        return [fn(item, **shared) for item in items]


@dataclass(frozen=True)
class DaskSweep:
    """One Dask task per item; ``shared`` arguments are scattered to every worker once."""

    client: Any  # distributed.Client

    def map(self, fn: Callable[..., R], items: Sequence[T], **shared: Any) -> list[R]:
        if not items:
            return []
        scattered = {k: self.client.scatter(v, broadcast=True) for k, v in shared.items()}
        futures = self.client.map(fn, list(items), pure=False, **scattered)
        try:
            return self.client.gather(futures)
        finally:
            for future in futures:
                future.release()


#: Modules every task needs; imported on each worker when the sweep opens (nautilus, XGBoost, the
#: feature plugins), so the first task on a worker does not pay several seconds of imports.
PRELOAD = ("lbml.workflows.run", "lbml.workflows.walkforward", "lbml.workflows.robustness", "lbml.plugins")


def preload(modules: Sequence[str] = PRELOAD) -> None:
    import importlib

    from lbml.plugins import load_registry

    for name in modules:
        importlib.import_module(name)
    load_registry()  # imports the built-in plugins


def one_blas_thread():
    """Run BLAS/OpenMP with one thread inside a task (a context manager).

    A multi-threaded BLAS may sum in another order on another thread count, and GARCH's optimiser
    then ends a few ulps elsewhere; Dask's workers run BLAS on one thread. Every task function runs
    under this, serial or not, so a task gives the same bits in this process, in a Dask worker and
    on another machine.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def local_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def open_sweep(scheduler: str | None, workers: int | None = None) -> Iterator[Sweep]:
    """``None``: serial; ``"local"``: a LocalCluster of ``workers`` processes (default: one per core,
    one thread each) started and stopped here; ``"tcp://host:port"``: an existing Dask scheduler."""
    if scheduler is None:
        yield SerialSweep()
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers or local_workers(), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        try:
            with Client(cluster) as client:
                client.run(preload)
                yield DaskSweep(client)
        finally:
            cluster.close()
        return
    if not scheduler.startswith(("tcp://", "tls://")):
        raise ConfigError(f"--scheduler {scheduler}: expected 'local' or a scheduler address such as tcp://host:8786")
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--scheduler {scheduler}: cannot connect ({str(exc).splitlines()[0]})") from None
    with client:
        client.run(preload)
        yield DaskSweep(client)
