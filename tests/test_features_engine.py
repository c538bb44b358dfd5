"""Bar data through the engine: kline taker-buy volume and funding reach the features as custom
data, so every feature the engine computes equals the batch replay, bar for bar."""

import numpy as np
import pandas as pd
import pytest

from lbml.data.frames import InstrumentData, MarketData
from lbml.data.synthetic import SyntheticMarketConfig, generate_market
from lbml.engine.backtest import run_backtest
from lbml.features.market import market_features
from lbml.features.pipeline import FeaturePipeline
from lbml.models.artifact import load_artifact
from lbml.research.training import scenario_pipeline
from lbml.split import compute_split
from lbml.workflows.prepare import Prepared, train_model, warm_up


class RecordingPipeline(FeaturePipeline):
    """The real pipeline, keeping a copy of every feature row it hands to the engine."""

    def __init__(self, plugins):
        super().__init__(plugins)
        self.rows: dict[int, np.ndarray] = {}

    def update(self, bar):
        out = super().update(bar)
        self.rows[bar.ts] = out.copy()
        return out


@pytest.mark.slow
def test_bar_mode_engine_features_equal_the_batch_replay(registry, small_scenario, tmp_path):
    scenario = small_scenario.with_data(days=3)
    ticks = generate_market(SyntheticMarketConfig(days=3, seed=5, edge=0.1))
    # Klines-like data: bars with taker-buy volume, no trades, quotes or depth.
    bars_only = {s: InstrumentData(symbol=s, bars=d.bars, source="bars") for s, d in ticks.instruments.items()}
    market = MarketData(bars_only, ticks.funding, 1)
    split = compute_split(market[scenario.data.symbol].bars.index, scenario)
    prepared = Prepared(scenario, market, split)
    train_model(prepared, registry, tmp_path / "model")

    base = scenario_pipeline(scenario, market, registry)
    assert {p.name for p in base.plugins} == {"technical", "volatility", "lagged", "cross_asset", "funding", "order_flow"}
    artifact = load_artifact(tmp_path / "model", registry, base.schema())
    pipeline = RecordingPipeline(base.plugins)
    pipeline.load_fitted_state(artifact.feature_state)
    warm_up(pipeline, prepared)
    pipeline.rows.clear()
    result = run_backtest(scenario, market, split, pipeline, artifact.model)
    assert result.mode == "bars" and len(pipeline.rows) > 1000

    fresh = scenario_pipeline(scenario, market, registry)
    fresh.load_fitted_state(artifact.feature_state)
    batch = market_features(fresh, market, scenario.data.symbol, scenario.data.reference_symbol)
    engine = pd.DataFrame(list(pipeline.rows.values()), index=pd.to_datetime(list(pipeline.rows), utc=True),
                          columns=batch.columns)
    np.testing.assert_allclose(engine.to_numpy(), batch.loc[engine.index].to_numpy(), rtol=1e-9, atol=1e-12)
    # The order-flow features used the real aggressor split (taker-buy volume), not a fallback.
    assert engine["mi_flow_imbalance_15"].notna().all()
    assert engine["xa_funding_rate"].nunique() > 1
