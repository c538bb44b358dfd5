"""Honest performance statistics: PSR, DSR, bootstrap Sharpe interval, PBO (CSCV), information coefficient (the calibration error is in ``lbml.models.calibration``).

Formulas follow Bailey & López de Prado (PSR/DSR, 2012/2014) and Bailey, Borwein, López de Prado
& Zhu (PBO, 2015); see RESEARCH_NOTES. Sharpe ratios here are per observation (not annualised).
"""

import math
from itertools import combinations

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329


def sharpe(returns: np.ndarray) -> float:
    """Per-observation Sharpe ratio (mean / sample std); NaN when undefined."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return float("nan")
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else float("nan")


def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """PSR(SR*) of a return series; skewness and kurtosis are the bias-corrected sample estimates."""
    r = np.asarray(returns, dtype=np.float64)
    sr = sharpe(r)
    if not math.isfinite(sr):
        return float("nan")
    g3 = float(stats.skew(r, bias=False)) if len(r) > 2 else 0.0
    g4 = float(stats.kurtosis(r, fisher=False, bias=False)) if len(r) > 3 else 3.0
    return psr_from_moments(sr, len(r), g3, g4, sr_benchmark)


def psr_from_moments(sr: float, n_obs: int, skewness: float, kurtosis: float, sr_benchmark: float = 0.0) -> float:
    """PSR(SR*) = Φ((SR − SR*)·√(T−1) / √(1 − γ3·SR + (γ4−1)/4·SR²)), γ4 non-excess kurtosis."""
    denom = 1.0 - skewness * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if denom <= 0 or n_obs < 2:
        return float("nan")
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)))


def expected_max_sharpe(sr_variance: float, n_trials: int) -> float:
    """SR0 = √Var[SR_n]·((1−γ)·Φ⁻¹(1−1/N) + γ·Φ⁻¹(1−1/(N·e))): the best of N skill-less trials."""
    if n_trials <= 1 or sr_variance <= 0:
        return 0.0
    n = float(n_trials)
    return math.sqrt(sr_variance) * (
        (1.0 - EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / n) + EULER_GAMMA * stats.norm.ppf(1.0 - 1.0 / (n * math.e))
    )


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, trial_variance: float | None = None) -> float:
    """DSR = PSR(SR0) with SR0 the expected maximum Sharpe of ``n_trials`` skill-less trials.

    Var[SR_n] is the larger of ``trial_variance`` (the cross-trial variance of the trials' Sharpe
    ratios, see ``lbml.research.trials.trial_evidence``) and the sampling variance of one Sharpe
    estimate under the null, 1/(T − 1): skill-less trials scatter at least that much, so trials that
    happen to agree (or are too few to estimate a variance) never shrink SR0 below it. With one
    trial DSR equals PSR(0).
    """
    r = np.asarray(returns, dtype=np.float64)
    var = max(1.0 / max(len(r) - 1, 1), trial_variance or 0.0)
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(var, max(1, int(n_trials))))


def sharpe_bootstrap_ci(
    returns: np.ndarray, *, confidence: float = 0.95, reps: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Stationary-bootstrap confidence interval of the per-observation Sharpe ratio (``arch``)."""
    from arch.bootstrap import StationaryBootstrap, optimal_block_length

    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 10 or not np.isfinite(sharpe(r)):
        return float("nan"), float("nan")
    block = float(optimal_block_length(r)["stationary"].iloc[0])
    bs = StationaryBootstrap(max(block, 1.0), r, seed=np.random.default_rng(seed))
    sr = np.array([sharpe(data[0][0]) for data in bs.bootstrap(reps)])
    sr = sr[np.isfinite(sr)]
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(sr, alpha)), float(np.quantile(sr, 1.0 - alpha))


def probability_of_backtest_overfitting(trial_returns: np.ndarray, n_blocks: int = 16) -> dict:
    """PBO by combinatorially symmetric cross-validation (CSCV).

    Parameters
    ----------
    trial_returns : numpy.ndarray
        T × N matrix: column n is trial n's return series on a common time grid.
    n_blocks : int
        Even number S of row blocks; every halving of them (C(S, S/2)) is one IS/OOS split.

    Returns
    -------
    dict
        ``pbo`` (share of splits whose in-sample best trial ranks at or below the OOS median),
        ``n_splits``, ``logits`` (λ per split) and ``performance_degradation`` (slope of OOS on IS
        Sharpe of the selected trial).
    """
    m = np.asarray(trial_returns, dtype=np.float64)
    t, n = m.shape
    if n < 2:
        raise ValueError("PBO needs at least two trials")
    if n_blocks % 2 or n_blocks < 2 or t < n_blocks * 2:
        raise ValueError(f"PBO needs an even number of blocks and at least {2 * n_blocks} rows")
    blocks = np.array_split(np.arange(t), n_blocks)
    logits, is_best, oos_best = [], [], []
    for chosen in combinations(range(n_blocks), n_blocks // 2):
        rows_is = np.concatenate([blocks[b] for b in chosen])
        mask = np.ones(t, dtype=bool)
        mask[rows_is] = False
        sr_is = _column_sharpe(m[rows_is])
        sr_oos = _column_sharpe(m[mask])
        best = int(np.nanargmax(sr_is))
        rank = stats.rankdata(sr_oos)[best]  # 1 = worst
        omega = rank / (n + 1.0)
        logits.append(math.log(omega / (1.0 - omega)))
        is_best.append(sr_is[best])
        oos_best.append(sr_oos[best])
    logits_a = np.array(logits)
    pairs = np.array([is_best, oos_best])
    pairs = pairs[:, np.isfinite(pairs).all(axis=0)]
    slope = float(np.polyfit(pairs[0], pairs[1], 1)[0]) if len(np.unique(pairs[0])) > 1 else float("nan")
    return {
        "pbo": float((logits_a <= 0).mean()),
        "n_splits": len(logits),
        "n_trials": n,
        "logits": logits_a,
        "performance_degradation": slope,
    }


def _column_sharpe(m: np.ndarray) -> np.ndarray:
    sd = m.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, m.mean(axis=0) / sd, 0.0)  # a flat (no-trade) series has Sharpe 0


def information_coefficient(prediction: np.ndarray, realised: np.ndarray) -> float:
    """Spearman rank correlation of predictions and realised returns."""
    if len(prediction) < 3:
        return float("nan")
    return float(stats.spearmanr(prediction, realised).statistic)
