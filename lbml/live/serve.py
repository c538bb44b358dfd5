"""``lbml feed serve``: replay a scenario's post-training data onto a ZeroMQ PUB socket.

Messages use the format documented in ``lbml.live.events``; the stream ends with ``{"type": "end"}``.
A publisher drops messages sent before a subscriber has connected, so the server binds an XPUB
socket and starts sending once the first subscription arrives (or after ``wait_s`` seconds
without one).
"""

import time

import zmq

from lbml.live.events import END_OF_STREAM, encode_event, replay_events
from lbml.research.training import scenario_pipeline
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario
from lbml.workflows.prepare import prepare


def serve_feed(
    scenario: Scenario,
    registry: PluginRegistry,
    endpoint: str,
    *,
    speed: float = 1.0,
    bars: int | None = None,
    wait_s: float = 1.0,
) -> int:
    """Send the scenario's events after the training window; return how many were sent."""
    from lbml.live.node import paper_custom_inputs, paper_symbols

    prepared = prepare(scenario, registry)
    pipeline = scenario_pipeline(scenario, prepared.market, registry)
    symbols = paper_symbols(scenario, prepared.market, pipeline)
    split = prepared.split
    end = None
    if bars is not None:
        index = prepared.market[scenario.data.symbol].bars.index
        after = index[index > split.test_start]
        end = after[min(bars, len(after)) - 1]
    sock = zmq.Context.instance().socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(endpoint)
    try:
        if sock.poll(int(wait_s * 1000), zmq.POLLIN):
            sock.recv()  # the first subscription
        sent = 0
        wall0 = ts0 = None
        for event in replay_events(prepared.market, symbols, split.test_start, end, **paper_custom_inputs(pipeline)):
            if wall0 is None:
                wall0, ts0 = time.monotonic(), event.ts
            delay = wall0 + (event.ts - ts0) / 1e9 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.send(encode_event(event))
            sent += 1
        sock.send(END_OF_STREAM)
        time.sleep(0.2)
        return sent
    finally:
        sock.close(linger=1000)
