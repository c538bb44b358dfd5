"""The edge gate: a model is traded only when its out-of-fold evidence shows an edge after costs.

Training records the evidence (``edge_evidence``: the deflated or probabilistic Sharpe ratio of
the out-of-fold trades net of every cost, their number and mean) in the model's manifest, where
the integrity check covers it. ``lbml backtest`` and ``lbml paper`` then decide with the scenario's
``[gate]`` thresholds (``gate_decision``): a closed gate means the model is not traded, said in
one line and in ``metrics.json``; ``--ignore-edge-gate`` trades it anyway, stamped in every report.
"""

import math
from dataclasses import dataclass
from typing import Any

OPEN, CLOSED, OVERRIDDEN, DISABLED = "open", "closed", "overridden", "disabled"
NOT_APPLICABLE = "not applicable"  # the strategy does not trade the model's predictions
OVERRIDE_STAMP = "EDGE-GATE-OVERRIDDEN"


def _num(x) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return math.nan
    return value


def edge_evidence(metrics: dict[str, Any], gate) -> dict[str, Any]:
    """The out-of-fold evidence the gate decides on, and whether it passes ``gate``'s thresholds."""
    evidence = {
        "statistic": gate.statistic,
        "value": _num(metrics.get(gate.statistic)),
        "psr": _num(metrics.get("psr")),
        "dsr": _num(metrics.get("dsr")),
        "n_trials": metrics.get("n_trials"),
        "n_oos_trades": int(metrics.get("n_oos_trades") or 0),
        "oos_mean_trade_return": _num(metrics.get("oos_mean_trade_return")),
    }
    passed, reason = _judge(evidence, gate)
    return evidence | {"passed": passed, "reason": reason, "threshold": gate.min_probability,
                       "min_trades": gate.min_trades}


def _judge(evidence: dict[str, Any], gate) -> tuple[bool, str]:
    value, trades, mean = evidence["value"], evidence["n_oos_trades"], evidence["oos_mean_trade_return"]
    name = gate.statistic.upper()
    n = evidence.get("n_trials")
    trials = f", N={n} trials" if n is not None else ""
    if trades < gate.min_trades:
        return False, (f"only {trades} out-of-fold trades cleared the EV rule after costs "
                       f"(at least {gate.min_trades} needed{trials})")
    if not math.isfinite(value) or value < gate.min_probability:
        shown = f"{value:.3f}" if math.isfinite(value) else "n/a"
        return False, (f"out-of-fold {name} {shown} < {gate.min_probability:g} over {trades} trades{trials} "
                       f"(mean net trade return {mean:+.4%})")
    if not mean > 0.0:
        return False, f"out-of-fold mean net trade return {mean:+.4%} is not positive"
    return True, (f"out-of-fold {name} {value:.3f} >= {gate.min_probability:g} over {trades} trades{trials} "
                  f"(mean net trade return {mean:+.4%})")


@dataclass(frozen=True)
class GateDecision:
    status: str  # open | closed | overridden | disabled
    reason: str
    evidence: dict[str, Any]

    @property
    def trades(self) -> bool:
        return self.status in (OPEN, OVERRIDDEN, DISABLED, NOT_APPLICABLE)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason} | self.evidence

    def line(self) -> str:
        if self.status == CLOSED:
            return f"edge gate closed: {self.reason}; the model was not traded (--ignore-edge-gate trades it anyway)"
        if self.status == OVERRIDDEN:
            return f"edge gate OVERRIDDEN (--ignore-edge-gate): {self.reason}"
        if self.status == DISABLED:
            return "edge gate disabled in the scenario ([gate] enabled = false)"
        if self.status == NOT_APPLICABLE:
            return f"edge gate not applicable: {self.reason}"
        return f"edge gate open: {self.reason}"


def gate_decision(
    training_metrics: dict[str, Any], gate, *, override: bool = False, strategy_cls: type | None = None
) -> GateDecision:
    """Decide with the scenario's thresholds on the evidence the model's training recorded.

    A strategy class with ``trades_predictions = False`` (e.g. ``LeveragedHold``) does not trade
    the model, so the gate does not apply to it.
    """
    if strategy_cls is not None and not getattr(strategy_cls, "trades_predictions", True):
        return GateDecision(NOT_APPLICABLE, f"{strategy_cls.__name__} does not trade the model's predictions", {})
    if not gate.enabled:
        return GateDecision(DISABLED, "disabled in the scenario", {})
    if "oos_unavailable" in training_metrics:
        passed, reason, evidence = False, f"no out-of-fold evidence: {training_metrics['oos_unavailable']}", {}
    else:
        evidence = edge_evidence(training_metrics, gate)
        passed, reason = evidence.pop("passed"), evidence.pop("reason")
    if passed:
        return GateDecision(OPEN, reason, evidence)
    return GateDecision(OVERRIDDEN if override else CLOSED, reason, evidence)
