"""The wire format of the signal stream (schema version 1).

Every message is two frames, ``[topic, payload]``: topic ``signal.<SYMBOL>`` carries a signal,
topic ``heartbeat`` a heartbeat. Payloads are JSON objects (first byte ``{``) or MessagePack maps
with the same fields. ``schemas/signal.schema.json`` in the repository is the reference.
"""

import json
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from lbml.errors import LbmlError

SCHEMA_VERSION = 1
HEARTBEAT_TOPIC = "heartbeat"
SIGNAL_TOPIC_PREFIX = "signal."

Encoding = Literal["json", "msgpack"]
Direction = Literal["long", "short", "flat"]
FeedStatus = Literal["healthy", "degraded", "stale"]


class SignalsError(LbmlError):
    """A signal-stream setting, key file or message is invalid."""


@dataclass(frozen=True, slots=True)
class Signal:
    """The market part of one signal; the publisher adds identity, ``seq`` and ``ts_publish``."""

    symbol: str
    ts_event: int
    direction: Direction
    probability: float
    confidence: float
    kelly_fraction: float
    target_leverage: float
    stop_loss: float | None
    take_profit: float | None
    horizon: int


def signal_topic(symbol: str) -> str:
    """Return the topic a symbol's signals are published on."""
    return f"{SIGNAL_TOPIC_PREFIX}{symbol}"


def encode(payload: dict[str, Any], encoding: Encoding) -> bytes:
    """Serialise a payload dict as JSON (compact, UTF-8) or MessagePack."""
    if encoding == "json":
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    return msgpack.packb(payload, use_bin_type=True)


def decode(topic: bytes, payload: bytes) -> dict[str, Any]:
    """Decode one message, detecting JSON or MessagePack, and check version and topic.

    Raises
    ------
    SignalsError
        If the payload is undecodable, of another schema version, or on the wrong topic.
    """
    try:
        if payload[:1] == b"{":
            message = json.loads(payload)
        else:
            message = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise SignalsError(f"undecodable payload on topic {topic!r}: {exc}") from None
    if not isinstance(message, dict):
        raise SignalsError(f"payload on topic {topic!r} is not an object")
    version = message.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SignalsError(f"topic {topic!r}: schema_version {version!r}, expected {SCHEMA_VERSION}")
    kind = message.get("kind")
    expected = signal_topic(str(message.get("symbol"))) if kind == "signal" else HEARTBEAT_TOPIC
    if kind not in ("signal", "heartbeat") or topic.decode(errors="replace") != expected:
        raise SignalsError(f"topic {topic!r} does not match a {kind!r} payload")
    return message
