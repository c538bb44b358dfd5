"""Messages exchanged between lbml components on the nautilus message bus.

No ``from __future__ import annotations`` here: ``customdataclass`` builds its schema from the real
annotation types.
"""

from lbml.nautilus.custom_data import Data, DataType, customdataclass
from lbml.nautilus.model import InstrumentId


@customdataclass
class Prediction(Data):
    """A model's view at one bar close: P(up over ``horizon_bars``) for ``instrument_id``."""

    instrument_id: InstrumentId = InstrumentId.from_str("NONE.NONE")
    probability: float = 0.5
    close: float = 0.0
    horizon_bars: int = 1


PREDICTION_TYPE = DataType(Prediction)
