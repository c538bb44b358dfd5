"""A progress display for training: one tqdm bar over the stages, the current fold as its postfix.

Training has no natural unit of work (the folds dominate, but features, the final fit and the
reports take time too), so the bar counts stages and shows the cross-validation fold and its
out-of-fold log loss while the folds run. It writes to stderr and only when enabled (the CLI enables
it on a terminal): captured or piped output stays clean.
"""

import sys

from tqdm import tqdm

STAGES = ("features and labels", "cross-validation", "statistics", "final fit", "artifact and reports")


class TrainingProgress:
    """``stage(name)`` when a stage starts; ``fold(k, loss)`` after each CV split; ``close()`` at the end."""

    def __init__(self, enabled: bool) -> None:
        self._bar = tqdm(total=len(STAGES), desc="training", unit="stage", disable=not enabled, file=sys.stderr,
                         leave=False, bar_format="{desc}: {n}/{total} stages |{bar}| {elapsed}{postfix}")
        self._started: list[str] = []

    def stage(self, name: str) -> None:
        if name not in STAGES:
            raise ValueError(f"unknown training stage {name!r}")
        if self._started:
            self._bar.update(1)
        self._started.append(name)
        self._bar.set_description_str(f"training: {name}")
        self._bar.set_postfix_str("", refresh=True)

    def fold(self, k: int, loss: float) -> None:
        self._bar.set_postfix_str(f"fold {k + 1}, out-of-fold log loss {loss:.4f}")

    def close(self) -> None:
        if self._started:
            self._bar.update(1)
        self._bar.close()
