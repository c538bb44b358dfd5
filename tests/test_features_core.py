"""The core feature plugin: look-ahead safety and streaming == batch replay."""

import numpy as np
import pandas as pd
import pytest

from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.errors import PluginError
from lbml.features.pipeline import FeaturePipeline, bar_events, compute_features
from plugins.features_core import CoreFeatures


@pytest.fixture(scope="module")
def bnb():
    return generate_market(SyntheticMarketConfig(days=2, seed=3))["BNBUSDT"]


def test_outputs_are_finite_after_warmup(bnb):
    pipeline = FeaturePipeline([CoreFeatures()])
    features = compute_features(pipeline, bnb, bnb.bars)
    after = features.iloc[pipeline.warmup_bars:]
    assert np.isfinite(after.to_numpy()).all()
    assert features.iloc[: pipeline.warmup_bars - 1].isna().any(axis=1).all()


@pytest.mark.parametrize("cut", [100, 777, 1500, 2500])
def test_perturbing_the_future_leaves_the_past_unchanged(bnb, cut):
    pipeline = FeaturePipeline([CoreFeatures()])
    base = compute_features(pipeline, bnb, bnb.bars)
    rng = np.random.default_rng(cut)
    bars = bnb.bars.copy()
    shock = np.exp(rng.normal(0, 0.05, len(bars) - cut - 1))
    for col in ("open", "high", "low", "close"):
        bars.iloc[cut + 1 :, bars.columns.get_loc(col)] *= shock
    bars.iloc[cut + 1 :, bars.columns.get_loc("volume")] *= 3.0
    perturbed = compute_features(pipeline, bnb, bars)
    pd.testing.assert_frame_equal(base.iloc[: cut + 1], perturbed.iloc[: cut + 1])
    assert not base.iloc[cut + 1 :].equals(perturbed.iloc[cut + 1 :])


def test_streaming_bar_by_bar_equals_batch_replay(bnb):
    batch = compute_features(FeaturePipeline([CoreFeatures()]), bnb, bnb.bars)
    stream = FeaturePipeline([CoreFeatures()])
    rows = [stream.update(bar).copy() for bar in bar_events(bnb.bars)]
    np.testing.assert_allclose(np.array(rows), batch.to_numpy(), rtol=1e-12, equal_nan=True)


def test_features_are_scale_free(bnb):
    pipeline = FeaturePipeline([CoreFeatures()])
    base = compute_features(pipeline, bnb, bnb.bars)
    scaled = bnb.bars.copy()
    for col in ("open", "high", "low", "close"):
        scaled[col] *= 100.0
    again = compute_features(pipeline, bnb, scaled)
    np.testing.assert_allclose(again.to_numpy(), base.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_bad_parameters_are_refused():
    with pytest.raises(PluginError, match="parameter vol_window: Input should be greater than or equal to 2"):
        CoreFeatures(vol_window=1)
    with pytest.raises(PluginError, match="parameter windw: unknown parameter"):
        CoreFeatures(windw=3)
