"""Cost of the leverage models per market event: the same backtest with `[leverage] model = none`
(baseline, measured in the same run), `exchange_margin` (funding + liquidation guard) and
`aave_lending` (continuous interest + health factor + liquidation guard).

One model is trained once; each backtest replays the same synthetic tick window on nautilus.
"""

import copy
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]


def run(size: str) -> list[dict]:
    from lbml.engine.backtest import run_backtest
    from lbml.models.artifact import load_artifact
    from lbml.research.training import scenario_pipeline
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario
    from lbml.workflows.prepare import prepare, train_model, warm_up

    from benchmarks._scenarios import smoke_model

    days = 3 if size == "smoke" else 10
    registry = load_registry()
    base = load_scenario(ROOT / "scenarios" / "default.toml").with_data(days=days)
    if size == "smoke":
        base = smoke_model(base)
    prepared = prepare(base, registry)
    with TemporaryDirectory() as tmp:
        train_model(prepared, registry, Path(tmp) / "model")
        pipeline = scenario_pipeline(base, prepared.market, registry)
        artifact = load_artifact(Path(tmp) / "model", registry, pipeline.schema())
        pipeline.load_fitted_state(artifact.feature_state)
        warm_up(pipeline, prepared)
        timings: dict[str, tuple[float, int]] = {}
        for model in ("none", "exchange_margin", "aave_lending"):
            scenario = base.model_copy(update={"leverage": base.leverage.model_copy(update={"model": model})})
            started = time.perf_counter()
            result = run_backtest(scenario, prepared.market, prepared.split, copy.deepcopy(pipeline), artifact.model)
            timings[model] = (time.perf_counter() - started, result.n_events)
    base_us = timings["none"][0] / timings["none"][1] * 1e6
    rows = [{"name": "backtest_none_us_per_event", "value": base_us, "unit": "us/event", "baseline": None,
             "ratio": None, "target": None, "met": None, "note": f"{timings['none'][1]} events, {days} days"}]
    for model in ("exchange_margin", "aave_lending"):
        seconds, events = timings[model]
        us = seconds / events * 1e6
        rows.append({"name": f"backtest_{model}_us_per_event", "value": us, "unit": "us/event", "baseline": base_us,
                     "ratio": us / base_us, "target": "ratio <= 1.25", "met": us / base_us <= 1.25,
                     "note": "same window and model as the baseline, measured in the same run"})
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "smoke"), indent=1))
