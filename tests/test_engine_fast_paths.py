"""The backtest's fast paths (compiled trees, cache purging on flat bars) leave results unchanged."""

import numpy as np
import pytest

from lbml.engine.backtest import run_backtest
from lbml.models.artifact import load_artifact
from lbml.models.compiled import CompiledModel, accelerate
from lbml.models.training import scenario_pipeline
from lbml.workflows import prepare, train_model, warm_up


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from lbml.plugins import load_registry
    from lbml.scenario import load_scenario

    scenario = load_scenario("scenarios/default.toml").with_data(days=4)
    registry = load_registry()
    prepared = prepare(scenario, registry)
    model_dir = tmp_path_factory.mktemp("model") / "model"
    train_model(prepared, registry, model_dir)
    return prepared, registry, model_dir


def _backtest(trained, **options):
    prepared, registry, model_dir = trained
    pipeline = scenario_pipeline(prepared.scenario, prepared.market, registry)
    artifact = load_artifact(model_dir, registry, pipeline.schema())
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    return run_backtest(prepared.scenario, prepared.market, prepared.split, pipeline, artifact.model, **options)


def _fill_key(fill: dict) -> tuple:
    return fill["ts"], fill["side"], fill["order_type"], fill["liquidity"], fill["price"]


def test_cache_purging_does_not_change_results(trained):
    kept = _backtest(trained, compiled_inference=False, purge_every_bars=None)
    purged = _backtest(trained, compiled_inference=False, purge_every_bars=1, chunk_events=5_000)
    assert len(kept.record.positions) > 5, "the scenario should trade several times"
    assert len(purged.chunk_seconds) > 1  # the chunk-boundary purge ran too
    assert purged.predictions == kept.predictions
    assert purged.record.fills == kept.record.fills
    assert purged.record.positions == kept.record.positions
    assert purged.record.equity == kept.record.equity
    assert purged.final_balance == kept.final_balance


def test_compiled_trees_give_the_same_decisions(trained):
    native = _backtest(trained, compiled_inference=False)
    fast = _backtest(trained, compiled_inference=True)
    assert [t for t, _ in fast.predictions] == [t for t, _ in native.predictions]
    np.testing.assert_allclose([p for _, p in fast.predictions], [p for _, p in native.predictions], atol=1e-6)
    # Probabilities agree to float32 rounding (summation order); Kelly sizing can round an order
    # quantity to the neighbouring lot, nothing else may move.
    assert [_fill_key(f) for f in fast.record.fills] == [_fill_key(f) for f in native.record.fills]
    np.testing.assert_allclose(
        [f["quantity"] for f in fast.record.fills], [f["quantity"] for f in native.record.fills], rtol=1e-4
    )
    assert fast.final_balance == pytest.approx(native.final_balance, rel=1e-6)


def test_compiled_model_is_used_when_available(trained):
    prepared, registry, model_dir = trained
    pipeline = scenario_pipeline(prepared.scenario, prepared.market, registry)
    artifact = load_artifact(model_dir, registry, pipeline.schema())
    assert isinstance(accelerate(artifact.model), CompiledModel)
