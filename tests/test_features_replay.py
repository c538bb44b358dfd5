"""The batch replay equals feeding the same events one by one through the pipeline's methods."""

import copy

import numpy as np
import pytest

from benchmarks.bench_features import FULL_SET, make_inputs
from lbml.features.pipeline import FeaturePipeline, _EventStream, bar_events, compute_features
from lbml.plugins import load_registry


@pytest.fixture(scope="module")
def market():
    return make_inputs(1_500, seed=11)


def full_pipeline(bars) -> FeaturePipeline:
    registry = load_registry()
    pipeline = FeaturePipeline([registry.feature(name)() for name in (*FULL_SET, "core")])
    pipeline.fit(bars.iloc[:600])
    return pipeline


def stream_by_hand(pipeline: FeaturePipeline, data, bars, ref, funding) -> np.ndarray:
    """Every event through the pipeline's own ``on_*`` methods, as the engine delivers them."""
    pipeline.reset()
    return feed(pipeline, engine_events(data, bars, ref, funding))


def engine_events(data, bars, ref, funding) -> list[tuple]:
    """Every quote, depth snapshot, funding rate, reference bar and bar, in the engine's order."""
    q, d = data.quotes, data.depth
    return sorted(
        [(int(t), 0, "q", (float(b), float(a), float(bs), float(az)))
         for t, b, a, bs, az in zip(q.index.asi8, q["bid"], q["ask"], q["bid_size"], q["ask_size"])]
        + [(int(t), 0, "d", (float(b), float(a))) for t, b, a in zip(d.index.asi8, d["bid_depth"], d["ask_depth"])]
        + [(int(t), 0, "f", (float(r),)) for t, r in zip(funding.index.asi8, funding["rate"])]
        + [(e.ts, 0, "r", e) for e in bar_events(ref)]
        + [(e.ts, 1, "b", e) for e in bar_events(bars)],
        key=lambda e: (e[0], e[1]),
    )


def feed(pipeline: FeaturePipeline, events: list[tuple]) -> np.ndarray:
    """Deliver ``events`` to the pipeline; return the feature rows of its bars."""
    rows = []
    for ts, _, kind, payload in events:
        if kind == "q":
            pipeline.on_quote(ts, *payload)
        elif kind == "d":
            pipeline.on_depth(ts, *payload)
        elif kind == "f":
            pipeline.on_funding(ts, *payload)
        elif kind == "r":
            pipeline.on_reference_bar(payload)
        else:
            rows.append(pipeline.update(payload).copy())
    return np.array(rows)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def test_replay_equals_event_by_event_streaming(market, monkeypatch):
    data, bars, ref, funding = market
    pipeline = full_pipeline(bars)
    batch = compute_features(pipeline, data, bars, ref, funding).to_numpy()
    assert np.isfinite(batch[-50:]).all()  # every feature is past its warm-up (1,441 bars at most)
    assert same(batch, stream_by_hand(pipeline, data, bars, ref, funding))
    # Chunk boundaries anywhere (a prime chunk size) change nothing.
    monkeypatch.setattr(_EventStream, "_CHUNK", 7)
    assert same(batch, compute_features(pipeline, data, bars, ref, funding).to_numpy())


def test_bar_events_carry_python_scalars(market):
    _, bars, _, _ = market
    event = bar_events(bars)[0]
    assert type(event.ts) is int
    assert all(type(getattr(event, f)) is float for f in ("open", "high", "low", "close", "volume", "taker_buy_volume"))


def test_a_deep_copied_pipeline_carries_on_exactly_like_the_original(market):
    # The robustness sweep runs one backtest per variant on a deep copy of the warmed-up pipeline.
    data, bars, ref, funding = market
    pipeline = full_pipeline(bars)
    reference = stream_by_hand(pipeline, data, bars, ref, funding)
    events = engine_events(data, bars, ref, funding)
    cut = len(events) // 2
    pipeline.reset()
    warm = feed(pipeline, events[:cut])
    clone = copy.deepcopy(pipeline)
    rest = feed(clone, events[cut:])
    assert same(np.vstack([warm, rest]), reference)
    assert len(np.unique(rest[-50:], axis=0)) == 50  # the copy's features move bar by bar
    # the copy is independent: the original, untouched by the copy's events, continues the same way
    assert same(feed(pipeline, events[cut:]), rest)
