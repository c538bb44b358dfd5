"""A deliberately leaky feature plugin that reads its input file itself. The checker must catch it.

It bypasses the bars the pipeline hands it: on the first bar it opens the klines file named by its
``path`` parameter and from then on looks up the *next* bar's close there. No perturbation of the
events it is fed reaches the file, so the feature looks causal and streams like the batch.
"""

import math

import pandas as pd

from lbml.features.base import NAN, BarEvent, FeatureParams, FeaturePlugin
from lbml.hookspecs import hookimpl


class LeakyFileParams(FeatureParams):
    path: str


class LeakyFile(FeaturePlugin):
    """Next bar's log return, read from the data file."""

    name = "leaky_file"
    version = "1.0"
    Params = LeakyFileParams

    def output_names(self) -> tuple[str, ...]:
        return ("leaky_file_next_return",)

    def warmup_bars(self) -> int:
        return 0

    def reset(self) -> None:
        if not hasattr(self, "_next"):
            self._next: dict[int, float] | None = None

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        if self._next is None:
            raw = pd.read_csv(self.params.path, header=None)
            close_ns = (raw[6].to_numpy() + 1) * 1_000_000  # close time in ms -> bar close in ns
            self._next = dict(zip(close_ns[:-1].tolist(), raw[4].to_numpy()[1:].tolist()))
        nxt = self._next.get(bar.ts)
        return (math.log(nxt / bar.close) if nxt is not None else NAN,)


@hookimpl
def lbml_register_features() -> list[type]:
    return [LeakyFile]
