"""Inputs nautilus has no type for, as custom data the engine delivers like any other event:
funding-rate settlements, 5-level book summaries and the per-bar taker-buy volume of bar data.

No ``from __future__ import annotations`` here: ``customdataclass`` builds its schema from the real
annotation types.

The backtest adds them with ``engine.add_data(..., client_id=...)``; the ``SignalActor`` subscribes
and forwards funding to the feature pipeline and attaches the taker-buy volume to its bar. A message
at time t is delivered before a bar closing at t (nautilus processes data at t before time events at
t, and the backtest adds custom data before bars), which is the order the batch replay uses.
"""

import numpy as np
import pandas as pd

from lbml.nautilus.clock import index_ns
from lbml.nautilus.custom_data import ClientId, CustomData, Data, DataType, custom_data, customdataclass

FUNDING_CLIENT_ID = ClientId("LBML-FUNDING")
BAR_FLOW_CLIENT_ID = ClientId("LBML-BARFLOW")
DEPTH_CLIENT_ID = ClientId("LBML-DEPTH")


@customdataclass
class FundingRate(Data):
    """One funding settlement of the traded instrument: ``rate`` per settlement at ``ts_event``."""

    rate: float = 0.0


FUNDING_TYPE = DataType(FundingRate)


def to_funding_rates(frame: pd.DataFrame) -> list[CustomData]:
    """Turn a canonical funding frame (``rate`` indexed by settlement time) into engine data."""
    ts = index_ns(frame.index)
    rates = frame["rate"].to_numpy(np.float64)
    return [
        custom_data(FUNDING_TYPE, FundingRate(ts_event=int(t), ts_init=int(t), rate=float(r)))
        for t, r in zip(ts, rates)
    ]


@customdataclass
class BarFlow(Data):
    """The aggressive-buy volume of the traded bar closing at ``ts_event`` (from the bar data)."""

    taker_buy_volume: float = 0.0


BAR_FLOW_TYPE = DataType(BarFlow)


def to_bar_flows(bars: pd.DataFrame) -> list[CustomData]:
    """One ``BarFlow`` per bar with a finite ``taker_buy_volume``, as engine data."""
    taker = bars["taker_buy_volume"].to_numpy(np.float64)
    ts = index_ns(bars.index)
    keep = np.isfinite(taker)
    return [
        custom_data(BAR_FLOW_TYPE, BarFlow(ts_event=int(t), ts_init=int(t), taker_buy_volume=float(v)))
        for t, v in zip(ts[keep], taker[keep])
    ]


@customdataclass
class DepthSummary(Data):
    """Base-asset size resting on the best five levels of each side of the traded book."""

    bid_depth: float = 0.0
    ask_depth: float = 0.0


DEPTH_TYPE = DataType(DepthSummary)


def to_depth_summaries(frame: pd.DataFrame) -> list[CustomData]:
    """Turn a canonical depth frame into engine data."""
    ts = index_ns(frame.index)
    bid, ask = frame["bid_depth"].to_numpy(np.float64), frame["ask_depth"].to_numpy(np.float64)
    return [
        custom_data(DEPTH_TYPE, DepthSummary(ts_event=int(t), ts_init=int(t), bid_depth=float(b), ask_depth=float(a)))
        for t, b, a in zip(ts, bid, ask)
    ]
