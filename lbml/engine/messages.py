"""Messages exchanged between lbml components on the nautilus message bus.

No ``from __future__ import annotations`` here: ``customdataclass`` builds its schema from the real
annotation types.
"""

from nautilus_trader.core.data import Data
from nautilus_trader.model.custom import customdataclass
from nautilus_trader.model.data import DataType
from nautilus_trader.model.identifiers import InstrumentId


@customdataclass
class Prediction(Data):
    """A model's view at one bar close: P(up over ``horizon_bars``) for ``instrument_id``."""

    instrument_id: InstrumentId = InstrumentId.from_str("NONE.NONE")
    probability: float = 0.5
    close: float = 0.0
    horizon_bars: int = 1


PREDICTION_TYPE = DataType(Prediction)
