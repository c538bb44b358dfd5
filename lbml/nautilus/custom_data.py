"""lbml's own message types on the engine's bus: define them, wrap them as engine data, publish and
subscribe.

A message class is ``@customdataclass`` on ``Data`` with typed fields; no ``from __future__ import
annotations`` in the defining module (the decorator builds its schema from the real annotation
types). A v2 port redefines the classes (``core.data.Data`` is gone; ``model.custom.customdataclass``
exists) and rewrites the functions below (``publish_data(data_type, CustomData)``).
"""

from nautilus_trader.core.data import Data
from nautilus_trader.model.custom import customdataclass
from nautilus_trader.model.data import CustomData, DataType
from nautilus_trader.model.identifiers import ClientId

__all__ = ["ClientId", "CustomData", "Data", "DataType", "custom_data", "customdataclass", "publish_custom",
           "subscribe_custom", "unwrap_custom"]


def custom_data(data_type: DataType, item: Data) -> CustomData:
    """Wrap ``item`` for the engine's data path (``add_data`` in a backtest, a data client live)."""
    return CustomData(data_type, item)


def unwrap_custom(data):
    """Return the message a ``CustomData`` wraps (anything else unchanged)."""
    return getattr(data, "data", data)


def subscribe_custom(component, data_type: DataType, client_id: ClientId | None = None) -> None:
    """Have an actor's or strategy's ``on_data`` receive ``data_type`` (from ``client_id``, if given)."""
    if client_id is None:
        component.subscribe_data(data_type)
    else:
        component.subscribe_data(data_type, client_id=client_id)


def publish_custom(component, data_type: DataType, item: Data) -> None:
    """Publish ``item`` from an actor to every subscriber of ``data_type``."""
    component.publish_data(data_type, item)
