"""The readable summary of a training run: labelled rows from the metrics stored in the artifact.

``lbml train`` prints these rows as a two-column table (``--json`` prints the metrics themselves).
Every value comes from ``TrainResult.metrics`` (the artifact manifest's ``metrics``); what a short
window could not estimate is shown as n/a.
"""

from typing import Any


def training_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` rows summarising ``metrics`` of ``lbml.research.training.train``."""
    m = metrics
    gate = m.get("edge_gate") or {}
    if "oos_unavailable" in m:
        validation = f"none: {m['oos_unavailable']} (no out-of-sample statistics)"
    else:
        validation = (f"{m.get('validation_method')}, {m.get('n_cv_splits')} splits, {m.get('n_cv_paths')} "
                      f"path(s), embargo {m.get('embargo')}")
    rows = [
        ("validation", validation),
        ("OOS AUC / log loss", f"{_num(m.get('oos_auc'))} / {_num(m.get('oos_logloss'))}"),
        ("OOS Brier / ECE / IC", f"{_num(m.get('brier'))} / {_num(m.get('ece'))} / {_num(m.get('ic'))}"),
        ("OOS trades / win rate", f"{m.get('n_oos_trades', 'n/a')} / {_pct(m.get('oos_win_rate'))}"),
        ("OOS mean trade (net / cost)", f"{_pct(m.get('oos_mean_trade_return'), 3)} / "
                                        f"{_pct(m.get('oos_mean_trade_cost'), 3)}"),
        ("OOS trade Sharpe (95% CI)", f"{_num(m.get('oos_trade_sharpe'))} "
                                      f"({_num(m.get('sharpe_ci_low'))} .. {_num(m.get('sharpe_ci_high'))})"),
        ("PSR / DSR (N trials)", f"{_num(m.get('psr'))} / {_num(m.get('dsr'))} ({m.get('n_trials', 'n/a')})"),
        ("edge gate evidence", f"{'passes' if gate.get('passed') else 'fails'}: {gate.get('reason', 'n/a')}"),
        ("EV margin / threshold", f"{_num(m.get('ev_margin'))} / {_num(m.get('ev_threshold'))} "
                                  f"(break-even long {_num(m.get('ev_break_even_long'))}, "
                                  f"short {_num(m.get('ev_break_even_short'))})"),
        ("fit / early-stop / calibration", f"{m.get('n_fit')} / {m.get('n_validation')} / {m.get('n_calibration')} "
                                           f"samples, calibration {m.get('calibration') or 'none'}"),
        ("early-stopping AUC", f"{_num(m.get('early_stopping_auc'))} (in-sample: the block the trees were tuned on)"),
        ("label balance", _pct(m.get("label_balance"))),
    ]
    return rows


def _num(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) or value != value else f"{value:.3f}"


def _pct(value: Any, digits: int = 2) -> str:
    return "n/a" if not isinstance(value, (int, float)) or value != value else f"{value * 100:.{digits}f}%"
