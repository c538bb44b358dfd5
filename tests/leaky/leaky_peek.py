"""A deliberately leaky feature plugin: it peeks one bar ahead. The checker must catch it.

The leak is the classic one: ``fit`` keeps the training bars and ``update`` looks up the next
bar's close, which the incremental contract never hands over. It carries nothing through
``fitted_state``, so a live node (which only loads fitted state) would compute something else.
"""

import math

from lbml.features.base import NAN, BarEvent, FeatureDoc, FeaturePlugin
from lbml.hookspecs import hookimpl


class LeakyPeek(FeaturePlugin):
    """Next bar's log return: perfect in training, impossible live."""

    name = "leaky_peek"

    def output_names(self) -> tuple[str, ...]:
        return ("leaky_next_return",)

    def warmup_bars(self) -> int:
        return 1

    def docs(self) -> dict[str, FeatureDoc]:
        return {"leaky_next_return": FeatureDoc("ln(close(t+1) / close(t))  <- look-ahead", "log return")}

    def reset(self) -> None:
        if not hasattr(self, "_next_close"):
            self._next_close: dict[int, float] = {}

    def fit(self, bars) -> None:
        ts = bars.index.asi8
        closes = bars["close"].to_numpy()
        self._next_close = {int(t): float(c) for t, c in zip(ts[:-1], closes[1:])}

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        nxt = self._next_close.get(bar.ts)
        return (math.log(nxt / bar.close) if nxt is not None else NAN,)


@hookimpl
def lbml_register_features() -> list[type]:
    return [LeakyPeek]
