"""Topics lbml listens to on the engine's message bus, for components that are not plain
subscribers (venue modules, the recorder, the paper execution client).

nautilus 1.221 names them ``events.fills.<instrument>``, ``events.position.*``, ``data.bars.*`` and
``data.<custom type topic>``. A v2 port maps these subscriptions (v2 ``SimulationModule``s have no
bus handle: fills reach them another way, docs/ENGINE.md §8).
"""

#: Bar subscribers with a higher priority are called first (the default priority is 0).
DEFAULT_PRIORITY = 0


def subscribe_fills(msgbus, handler, instrument_id=None) -> None:
    """Call ``handler(OrderFilled)`` for every fill (of ``instrument_id`` only, if given)."""
    topic = "events.fills.*" if instrument_id is None else f"events.fills.{instrument_id}"
    msgbus.subscribe(topic=topic, handler=handler)


def subscribe_position_events(msgbus, handler) -> None:
    """Call ``handler`` with every position event (opened, changed, closed)."""
    msgbus.subscribe(topic="events.position.*", handler=handler)


def subscribe_all_bars(msgbus, handler, priority: int = DEFAULT_PRIORITY) -> None:
    """Call ``handler(Bar)`` for every bar of every bar type, before subscribers of lower priority."""
    msgbus.subscribe(topic="data.bars.*", handler=handler, priority=priority)


def subscribe_data_type(msgbus, data_type, handler) -> None:
    """Call ``handler`` with every message of a custom ``data_type`` (it has no instrument topic)."""
    msgbus.subscribe(f"data.{data_type.topic}", handler=handler)


def subscribe_all_data(msgbus, handler) -> None:
    """Call ``handler`` with everything the data engine publishes (bars, ticks, custom data), before
    the venue runs on it. Subscribe before the engine runs: nautilus 1.221's ``MessageBus.subscribe``
    matches a wildcard against the topics already published with its arguments swapped, so a pattern
    subscribed later never receives those topics."""
    msgbus.subscribe(topic="data.*", handler=handler)
