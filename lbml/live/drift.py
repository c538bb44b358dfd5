"""Feature drift: two-sample Kolmogorov-Smirnov tests of live features against the training window.

Every ``every_bars`` predictions, each feature's last ``window`` live values are tested against its
values over the training window (``scipy.stats.ks_2samp``). A feature drifts when its p-value is
below ``alpha``; the report is flagged when the share of drifting features exceeds ``max_share``.
Reports go to the state database (``drift`` table) and ``drift.json`` in the state folder.
"""

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbml.atomic import write_atomic


@dataclass(frozen=True)
class DriftConfig:
    every_bars: int = 240
    window: int = 240
    alpha: float = 0.01
    max_share: float = 0.3

    def __post_init__(self) -> None:
        if self.every_bars < 1 or self.window < 20 or not 0 < self.alpha < 1 or not 0 <= self.max_share <= 1:
            raise ValueError(f"invalid drift settings {self}")


class DriftMonitor:
    """Collects live feature rows and runs the KS tests on schedule."""

    def __init__(self, names: tuple[str, ...], reference: np.ndarray, config: DriftConfig, state_dir: Path,
                 status=None) -> None:
        self.names = names
        self.config = config
        self._reference = [col[np.isfinite(col)] for col in np.asarray(reference, dtype=np.float64).T]
        self._live: deque[np.ndarray] = deque(maxlen=config.window)
        self._n = 0
        self._reports: list[tuple] = []
        self._path = Path(state_dir) / "drift.json"
        self._status = status

    def add(self, ts: int, features: np.ndarray) -> None:
        self._live.append(np.array(features, dtype=np.float64))
        self._n += 1
        if self._n % self.config.every_bars == 0 and len(self._live) >= 20:
            self._reports.append(self.test(ts))

    def test(self, ts: int) -> tuple:
        from scipy.stats import ks_2samp  # imported on first use: scipy.stats takes seconds to import

        live = np.vstack(self._live)
        detail = {}
        drifted = 0
        for j, name in enumerate(self.names):
            sample = live[:, j][np.isfinite(live[:, j])]
            ref = self._reference[j]
            if len(sample) < 20 or len(ref) < 20:
                continue
            result = ks_2samp(ref, sample)
            is_drift = bool(result.pvalue < self.config.alpha)
            drifted += is_drift
            detail[name] = {"ks": float(result.statistic), "p": float(result.pvalue), "drift": is_drift}
        n = len(detail)
        share = drifted / n if n else 0.0
        flagged = share > self.config.max_share
        if self._status is not None:
            self._status.drift_flagged = flagged
        report = {"ts": ts, "n_features": n, "n_drifted": drifted, "share": share, "flagged": flagged,
                  "alpha": self.config.alpha, "max_share": self.config.max_share, "window": len(live),
                  "features": detail}
        write_atomic(self._path, json.dumps(report, indent=2, sort_keys=True))
        return ts, n, drifted, share, int(flagged), json.dumps(detail, sort_keys=True)

    def take_reports(self) -> list[tuple]:
        reports, self._reports = self._reports, []
        return reports
