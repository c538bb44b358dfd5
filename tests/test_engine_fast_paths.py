"""The backtest's fast paths (compiled trees, cache purging on flat bars) leave results unchanged."""

import numpy as np
import pytest

from lbml.engine.backtest import run_backtest
from lbml.models.artifact import load_artifact
from lbml.models.compiled import CompiledModel, accelerate
from lbml.research.training import scenario_pipeline
from lbml.workflows.prepare import prepare, train_model, warm_up


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


def test_fast_paths_do_not_change_results(trained):
    slow = _backtest(trained, compiled_inference=False, purge_every_bars=None)
    fast = _backtest(trained, compiled_inference=True, purge_every_bars=1, chunk_events=5_000)
    assert len(slow.record.positions) > 5, "the scenario should trade several times"
    assert len(fast.chunk_seconds) > 1  # the chunk-boundary purge ran too
    assert fast.predictions == slow.predictions  # bit for bit
    assert fast.record.fills == slow.record.fills
    assert fast.record.positions == slow.record.positions
    assert fast.record.equity == slow.record.equity
    assert fast.final_balance == slow.final_balance


def test_acceleration_never_changes_a_prediction(trained):
    """The default scenario's model gets compiled trees (bit-identical, so accepted) under its calibration."""
    prepared, registry, model_dir = trained
    pipeline = scenario_pipeline(prepared.scenario, prepared.market, registry)
    artifact = load_artifact(model_dir, registry, pipeline.schema())
    fast = accelerate(artifact.model)
    assert type(fast) is type(artifact.model)  # calibrated models keep their calibration around the trees
    inner = getattr(fast, "base", fast)
    assert isinstance(inner, CompiledModel)
    X = np.random.default_rng(3).normal(size=(200, artifact.model.n_features_in_))
    np.testing.assert_array_equal(fast.predict_proba(X), artifact.model.predict_proba(X))
    assert [fast.predict_up_one(x) for x in X[:20]] == [artifact.model.predict_up_one(x) for x in X[:20]]
