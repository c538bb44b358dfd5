"""Feature drift: has the live feature distribution left the training window's?

Every ``every_bars`` predictions, each feature's last ``window`` live values (fewer until the
session has made ``window`` predictions) are compared with its
values over the training window by the two-sample Kolmogorov-Smirnov distance ``D``. Two things make
the textbook test (``scipy.stats.ks_2samp`` at ``alpha`` per feature) alarm on data drawn exactly
like the training data, and both are corrected here:

* **Autocorrelation.** Features are rolling statistics: consecutive values are strongly correlated,
  so 240 live bars carry the information of far fewer independent draws, and the textbook p-value
  (which assumes independent draws) is far too small. Each feature's integrated autocorrelation time
  ``tau`` is estimated once, on the training window, from the indicator series ``x_t <= median``
  (the empirical CDF at the median is where the KS distance of a shift is largest; Geyer's initial
  positive sequence truncates the sum). Both samples then count as ``n / tau`` independent draws,
  and the p-value is the KS distribution's at the effective size ``n_e m_e / (n_e + m_e)``
  (``scipy.stats.kstwo``, as ``ks_2samp(method="asymp")`` computes it for independent samples).
  A feature whose live window holds fewer than ``min_effective`` effective draws (time of day over a
  few hours, say) cannot be tested and is reported as untested.
* **Multiple testing.** Forty features tested at 1% each give a false alarm on about a third of all
  checks. The p-values of one check are adjusted with Holm's step-down method: the check flags drift
  when any adjusted p-value is below ``alpha``, so a check on undrifted data alarms with probability
  at most ``alpha`` whatever the number of features (family-wise error rate). Checks are then
  spaced: ``k`` checks give at most ``k * alpha`` expected false alarms (6 checks a day at 1%: one
  false alarm in about 17 days).

Reports go to the state database (``drift`` table: features tested, features drifted, their share,
the flag, and per feature ``D``, ``tau``, the effective size, the raw and adjusted p-values) and to
``drift.json`` in the state folder; the status carries the flag, the number of drifted features and
the smallest adjusted p-value.
"""

import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lbml.atomic import write_atomic


@dataclass(frozen=True)
class DriftReference:
    """A reference sample ready to test against: each feature's sorted finite values, and the
    autocorrelation time of its indicator of being at or below the median."""

    sorted: list[np.ndarray]
    tau: list[float]


def drift_reference(reference: np.ndarray) -> DriftReference:
    """Prepare ``reference`` (rows are bars, columns features) for the monitor."""
    columns = np.asarray(reference, dtype=np.float64).T
    finite = [col[np.isfinite(col)] for col in columns]
    return DriftReference([np.sort(col) for col in finite],
                          [autocorrelation_time(col <= np.median(col)) if len(col) >= 20 else math.inf for col in finite])


@dataclass(frozen=True)
class DriftConfig:
    every_bars: int = 240
    window: int = 1440  # a day of minute bars: slow features (volatility, depth) need it to be testable
    alpha: float = 0.01  # family-wise false-alarm probability of one check
    min_effective: float = 5.0  # effective live draws a feature needs to be tested

    def __post_init__(self) -> None:
        if self.every_bars < 1 or self.window < 20 or not 0 < self.alpha < 1 or self.min_effective < 1:
            raise ValueError(f"invalid drift settings {self}")


def autocorrelation_time(x: np.ndarray) -> float:
    """Integrated autocorrelation time ``1 + 2 sum_k rho_k`` of ``x`` (Geyer's initial positive
    sequence: lag pairs are summed while their sum is positive and decreasing); at least 1."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    centred = x - x.mean()
    var = float(centred @ centred)
    if n < 4 or var == 0.0:
        return math.inf
    spectrum = np.fft.rfft(centred, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n] / var
    k = n // 2
    pairs = acf[0: 2 * k: 2] + acf[1: 2 * k: 2]
    total, previous = 0.0, math.inf
    for gamma in pairs:
        if gamma <= 0:
            break
        gamma = min(gamma, previous)
        total += gamma
        previous = gamma
    return max(1.0, 2.0 * total - 1.0)


def ks_pvalue(d: float, n: float, m: float) -> float:
    """Asymptotic two-sample KS p-value of distance ``d`` between samples of (effective) sizes ``n``
    and ``m``: ``kstwo.sf(d, round(n m / (n + m)))``, ``ks_2samp(method="asymp")``'s formula."""
    from scipy.stats import kstwo

    en = max(1, round(n * m / (n + m)))
    return float(min(1.0, max(0.0, kstwo.sf(d, en))))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def ks_distance(reference_sorted: np.ndarray, sample: np.ndarray) -> float:
    sample = np.sort(sample)
    points = np.concatenate([reference_sorted, sample])
    cdf_ref = np.searchsorted(reference_sorted, points, side="right") / len(reference_sorted)
    cdf_live = np.searchsorted(sample, points, side="right") / len(sample)
    return float(np.max(np.abs(cdf_ref - cdf_live)))


class DriftMonitor:
    """Collects live feature rows and runs the corrected tests on schedule."""

    def __init__(self, names: tuple[str, ...], reference: np.ndarray, config: DriftConfig, state_dir: Path,
                 status=None) -> None:
        self.names = names
        self.config = config
        self.rebase(reference)
        self._live: deque[np.ndarray] = deque(maxlen=config.window)
        self._n = 0
        self._reports: list[tuple] = []
        self._path = Path(state_dir) / "drift.json"
        self._status = status

    def rebase(self, reference: "np.ndarray | DriftReference") -> None:
        """Test against ``reference`` from now on (a retrained model's training features, or their
        ``drift_reference`` prepared off the bar loop); the live window is kept."""
        ref = reference if isinstance(reference, DriftReference) else drift_reference(reference)
        self._reference, self.tau = ref.sorted, ref.tau

    def add(self, ts: int, features: np.ndarray) -> None:
        self._live.append(np.array(features, dtype=np.float64))
        self._n += 1
        if self._n % self.config.every_bars == 0 and len(self._live) >= 20:
            self._reports.append(self.test(ts))

    def test(self, ts: int) -> tuple:
        live = np.vstack(self._live)
        detail: dict[str, dict] = {}
        tested: list[str] = []
        pvalues: list[float] = []
        for j, name in enumerate(self.names):
            sample = live[:, j][np.isfinite(live[:, j])]
            ref, tau = self._reference[j], self.tau[j]
            n_eff, m_eff = len(sample) / tau, len(ref) / tau
            if len(sample) < 20 or len(ref) < 20 or n_eff < self.config.min_effective:
                detail[name] = {"tested": False, "tau": _num(tau), "n_eff": _num(n_eff)}
                continue
            d = ks_distance(ref, sample)
            p = ks_pvalue(d, n_eff, m_eff)
            detail[name] = {"tested": True, "ks": d, "tau": tau, "n_eff": n_eff, "p": p}
            tested.append(name)
            pvalues.append(p)
        adjusted = holm(pvalues)
        for name, p_adj in zip(tested, adjusted):
            detail[name] |= {"p_holm": p_adj, "drift": p_adj < self.config.alpha}
        n = len(tested)
        drifted = sum(detail[name]["drift"] for name in tested)
        share = drifted / n if n else 0.0
        flagged = drifted > 0
        min_p = min(adjusted) if adjusted else None
        if self._status is not None:
            self._status.drift_flagged = flagged
            self._status.drift_flags += int(flagged)
            self._status.drift_features = drifted
            self._status.drift_min_p = min_p
        report = {"ts": ts, "n_features": n, "n_untested": len(self.names) - n, "n_drifted": drifted, "share": share,
                  "flagged": flagged, "alpha": self.config.alpha, "min_p_holm": min_p, "window": len(live),
                  "method": "KS at effective sample sizes (autocorrelation time of the training window), "
                            "Holm-adjusted across features",
                  "features": detail}
        write_atomic(self._path, json.dumps(report, indent=2, sort_keys=True))
        return ts, n, drifted, share, int(flagged), json.dumps(detail, sort_keys=True)

    def take_reports(self) -> list[tuple]:
        reports, self._reports = self._reports, []
        return reports


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None
