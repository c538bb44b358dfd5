"""Volatility layer (6 features): GARCH(1,1), realised, Parkinson, Garman–Klass, drawdown, time since high.

GARCH(1,1) is fit with ``arch`` on the training window only (``fit``), on log returns multiplied by
s = 1 / std(training returns), so the optimiser sees unit-variance data. A fixed × 100 is not
enough on 1-minute bars: the returns are then ~0.05 in size, ω ~ 1e-4, and ``arch`` often stays
at its starting grid point (α = 0.1, β = 0.88) while reporting success. The fit counts as
converged only if the optimiser reports success *and* α, β moved away from that starting point
(``arch``'s grid search, recomputed here); a fit that did not converge is kept (its parameters
are still a valid GARCH) but is flagged in the fitted state and announced by one warning line.
The parameters and s are frozen into ``fitted_state["garch"]``, the convergence record and the
log-likelihood (in log-return units) into ``fitted_state["garch_fit"]``; the streaming update
runs the variance recursion σ²(t+1) = ω + α·ε(t)² + β·σ²(t), ε(t) = s·r(t) − μ, with them, so no
bar ever refits. Inside cross-validation the plugin is refitted per fold on that fold's training
bars (``fit_segments``: returns within each contiguous segment, none across a purged test block).
All outputs are in log-return units or ratios, hence scale-free.
"""

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from lbml.errors import PluginError
from lbml.features.base import NAN, BarEvent, FeatureDoc, FeatureParams, FeaturePlugin
from lbml.features.rolling import RollingExtreme, RollingMaxDrawdown, RollingSum
from lbml.hookspecs import hookimpl

_LN2 = math.log(2.0)
_GK_C = 2.0 * _LN2 - 1.0
_MIN_FIT_RETURNS = 100
# α and β both closer than this to the optimiser's starting values: the fit never left its start
# (the stuck × 100 fits of 1-minute returns ended within 1e-6 of it).
_STUCK_TOL = 1e-4
_STATE_KEYS = ("mu", "omega", "alpha", "beta", "initial_variance", "scale")

log = logging.getLogger(__name__)


class VolatilityParams(FeatureParams):
    window: int = Field(15, ge=2, le=10_000, description="bars for realised, Parkinson and Garman–Klass")
    drawdown_window: int = Field(60, ge=2, le=10_000)
    garch_dist: str = Field("t", pattern="^(normal|t)$")


class VolatilityFeatures(FeaturePlugin):
    """GARCH conditional volatility and range-based volatility estimators."""

    name = "volatility"
    version = "2"
    Params = VolatilityParams

    def __init__(self, **params: Any) -> None:
        self._garch: dict[str, float] | None = None
        self._fit_record: dict[str, Any] = {}
        super().__init__(**params)

    def output_names(self) -> tuple[str, ...]:
        p = self.params
        return (
            "vol_garch",
            f"vol_realised_{p.window}",
            f"vol_parkinson_{p.window}",
            f"vol_garman_klass_{p.window}",
            f"vol_max_drawdown_{p.drawdown_window}",
            f"vol_time_since_high_{p.drawdown_window}",
        )

    def warmup_bars(self) -> int:
        p = self.params
        return max(p.window + 1, p.drawdown_window)

    def docs(self) -> dict[str, FeatureDoc]:
        p = self.params
        w, d = p.window, p.drawdown_window
        return {
            "vol_garch": FeatureDoc(
                "sqrt(σ²(t+1)) / s with σ²(t+1) = ω + α·(s·r(t) − μ)² + β·σ²(t), s = 1 / std(training returns); "
                f"GARCH(1,1), {p.garch_dist} shocks, fit by arch on the training window only "
                "(in cross-validation: on each fold's training bars), frozen",
                "log return per bar",
            ),
            f"vol_realised_{w}": FeatureDoc(f"sqrt(Σ r² over the last {w} 1-bar log returns)", "log return"),
            f"vol_parkinson_{w}": FeatureDoc(
                f"sqrt(mean over {w} bars of ln(H/L)² / (4·ln 2))", "log return per bar"
            ),
            f"vol_garman_klass_{w}": FeatureDoc(
                f"sqrt(mean over {w} bars of ½·ln(H/L)² − (2·ln 2 − 1)·ln(C/O)²)", "log return per bar"
            ),
            f"vol_max_drawdown_{d}": FeatureDoc(
                f"max over the last {d} closes of 1 − close / running max close", "fraction of price"
            ),
            f"vol_time_since_high_{d}": FeatureDoc(
                f"(bars since the highest high of the last {d} bars, the latest of equal highs) / {d}", "ratio in [0, 1)"
            ),
        }

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, bars: pd.DataFrame) -> None:
        self.fit_segments([bars])

    def fit_segments(self, segments: Sequence[pd.DataFrame]) -> None:
        """Fit GARCH(1,1) on the 1-bar log returns inside each segment (none across a gap)."""
        from arch import arch_model

        parts = [np.diff(np.log(seg["close"].to_numpy(np.float64))) for seg in segments]
        returns = np.concatenate(parts) if parts else np.zeros(0)
        returns = returns[np.isfinite(returns)]
        if len(returns) < _MIN_FIT_RETURNS:
            raise PluginError(
                f"feature plugin volatility: GARCH needs >= {_MIN_FIT_RETURNS} training returns, got {len(returns)}"
            )
        sd = float(np.std(returns))
        if not sd > 0:
            raise PluginError("feature plugin volatility: GARCH training returns are all equal")
        scale = 1.0 / sd
        y = scale * returns
        model = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, dist=self.params.garch_dist)
        # the (ω, α, β) arch starts from: its grid search on the residuals about the sample mean
        start_vol = np.asarray(model.volatility.starting_values(y - y.mean()), dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(disp="off", show_warning=False)
        params = result.params
        alpha, beta = float(params["alpha[1]"]), float(params["beta[1]"])
        omega, mu = float(params["omega"]), float(params["mu"])
        if not all(map(math.isfinite, (alpha, beta, omega, mu))) or omega <= 0:
            raise PluginError("feature plugin volatility: GARCH fit did not converge to finite parameters")
        opt = result.optimization_result
        moved = max(abs(alpha - start_vol[1]), abs(beta - start_vol[2])) > _STUCK_TOL
        converged = bool(result.convergence_flag == 0 and moved)
        message = str(opt.message) if moved else f"{opt.message}, but alpha and beta never left their starting values"
        if not converged:
            log.warning(
                "feature plugin volatility: GARCH fit on %d returns did not converge (%s); "
                "alpha=%.4f beta=%.4f kept",
                len(returns), message, alpha, beta,
            )
        self._garch = {
            "mu": mu,
            "omega": omega,
            "alpha": alpha,
            "beta": beta,
            "initial_variance": float(np.var(y)),
            "scale": scale,
        }
        self._fit_record = {
            "converged": converged,
            "optimizer_message": message,
            "iterations": int(opt.nit),
            "n_returns": int(len(returns)),
            # log-likelihood of the returns in log-return units: that of y = s·r plus n·ln(s)
            "loglikelihood": float(result.loglikelihood) + len(returns) * math.log(scale),
            "start_alpha": float(start_vol[1]),
            "start_beta": float(start_vol[2]),
            "nu": float(params["nu"]) if "nu" in params.index else None,  # Student t degrees of freedom
        }
        self.reset()

    def fitted_state(self) -> dict[str, Any]:
        if self._garch is None:
            return {}
        return {"garch": dict(self._garch), "garch_fit": dict(self._fit_record)}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        garch = state.get("garch")
        if garch is None:
            raise PluginError("feature plugin volatility: fitted state has no GARCH parameters")
        try:
            self._garch = {k: float(garch[k]) for k in _STATE_KEYS}
        except (KeyError, TypeError, ValueError):
            raise PluginError("feature plugin volatility: fitted GARCH state is malformed") from None
        self._fit_record = dict(state.get("garch_fit", {}))
        self.reset()

    # -- streaming -----------------------------------------------------------------------------
    def reset(self) -> None:
        p = self.params
        self._prev_close = NAN
        self._sq_returns = RollingSum(p.window)
        self._park = RollingSum(p.window)
        self._gk = RollingSum(p.window)
        self._drawdown = RollingMaxDrawdown(p.drawdown_window)
        self._highs = RollingExtreme(p.drawdown_window)
        self._variance = self._garch["initial_variance"] if self._garch is not None else NAN
        # The frozen GARCH parameters as attributes: the recursion runs once per bar.
        g = self._garch or {}
        self._mu, self._omega = g.get("mu", NAN), g.get("omega", NAN)
        self._alpha, self._beta = g.get("alpha", NAN), g.get("beta", NAN)
        self._scale = g.get("scale", NAN)

    def update(self, bar: BarEvent) -> tuple[float, ...]:
        if self._garch is None:
            raise PluginError("feature plugin volatility: GARCH is not fitted (call fit or load_fitted_state)")
        close = bar.close
        prev = self._prev_close
        self._prev_close = close
        sq = self._sq_returns
        garch = NAN
        if prev == prev:  # not NaN
            r = math.log(close / prev)
            sq.push(r * r)
            eps = self._scale * r - self._mu
            self._variance = self._omega + self._alpha * eps * eps + self._beta * self._variance
            garch = math.sqrt(self._variance) / self._scale
        high = bar.high
        hl = math.log(high / bar.low)
        co = math.log(close / bar.open)
        park_mean = self._park.push_mean(hl * hl)
        gk_mean = self._gk.push_mean(0.5 * hl * hl - _GK_C * co * co)
        drawdown = self._drawdown
        drawdown.push(close)
        self._highs.push(high)

        realised = math.sqrt(max(sq.total, 0.0)) if sq.full else NAN
        if self._park.full:
            park_v = math.sqrt(max(park_mean, 0.0) / (4.0 * _LN2))
            gk_v = math.sqrt(max(gk_mean, 0.0))
        else:
            park_v = gk_v = NAN
        if drawdown.full:
            window = drawdown.window
            return (garch, realised, park_v, gk_v, drawdown.value(), self._highs.bars_since_max() / window)
        return (garch, realised, park_v, gk_v, NAN, NAN)


@hookimpl
def lbml_register_features() -> list[type]:
    return [VolatilityFeatures]
