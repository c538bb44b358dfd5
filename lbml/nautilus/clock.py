"""The engine's time: integer nanoseconds since the Unix epoch, and how lbml reads the engine clock.

nautilus 1.221 and v2 both count time in ns (``ts_event``, ``ts_init``, timers); the conversions
live here so that the unit is stated once.
"""

import numpy as np
import pandas as pd

NS_PER_MS = 1_000_000
NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_YEAR = 365 * 24 * 3600 * NS_PER_SECOND


def ms_to_ns(ms: float) -> int:
    """Return ``ms`` milliseconds as engine nanoseconds (truncated, as a latency model takes them)."""
    return int(ms * NS_PER_MS)


def minutes_to_ns(minutes: int) -> int:
    """Return ``minutes`` as engine nanoseconds."""
    return minutes * 60 * NS_PER_SECOND


def index_ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Return a UTC ``DatetimeIndex`` as engine timestamps (int64 ns)."""
    return index.asi8.astype(np.int64)


def component_now_ns(component) -> int:
    """Return the time of a running actor's or strategy's clock (backtest: the replayed time)."""
    return component.clock.timestamp_ns()


def engine_now_ns(engine) -> int:
    """Return the time of a backtest engine's clock (the last event it processed)."""
    return engine.kernel.clock.timestamp_ns()
