"""The LSTM plugin: its NumPy inference is the trained network, its rows are windows of the same
incremental features, and a backtest's per-bar predictions equal the model on the batch sequences."""

import numpy as np
import pandas as pd
import pytest
import torch

from lbml.errors import ArtifactError
from lbml.features.market import market_features
from lbml.features.pipeline import FeatureSchema, compute_features
from lbml.features.sequence import SequencePipeline
from lbml.models.artifact import TrainingWindow, load_artifact, save_artifact
from lbml.research.training import scenario_pipeline
from lbml.plugins import load_registry
from lbml.workflows.prepare import prepare
from lbml.workflows.run import run_scenario

from .conftest import shared_file, without_calibration, without_edge_gate

torch.set_num_threads(1)
REGISTRY = load_registry()
SMALL = {"window": 3, "hidden_size": 6, "num_layers": 2, "max_epochs": 15, "batch_size": 64, "learning_rate": 0.01}


def _sequential(n: int = 700, width: int = 3, seed: int = 0):
    """Rows of 3 bars × ``width`` features; the label depends on the oldest and newest bar."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3 * width))
    logit = 2.0 * X[:, 0] - 1.5 * X[:, -1]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_numpy_inference_is_the_trained_torch_network():
    X, y = _sequential()
    model = REGISTRY.model("lstm")(**SMALL).fit(X[:500], y[:500])
    net = torch.nn.LSTM(3, 6, num_layers=2, batch_first=True)
    head = torch.nn.Linear(6, 1)
    state = {k: torch.from_numpy(v) for k, v in model.weights_.items()}
    net.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
    head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    seq = ((X[500:].reshape(-1, 3, 3) - model.mean_) / model.scale_).astype(np.float32)
    with torch.no_grad():
        out, _ = net(torch.from_numpy(seq))
        expected = torch.sigmoid(head(out[:, -1])).squeeze(-1).numpy()
    np.testing.assert_allclose(model.predict_proba(X[500:])[:, 1], expected, atol=2e-6)
    for row in X[500:520]:  # the per-bar path is the batch path on one row
        assert model.predict_up_one(row) == pytest.approx(model.predict_proba(row[None])[0, 1], rel=1e-12)


def test_early_stopping_keeps_the_best_epoch_and_fits_are_seeded():
    X, y = _sequential(seed=1)
    params = SMALL | {"max_epochs": 60, "patience": 3}
    a = REGISTRY.model("lstm")(**params).fit(X[:450], y[:450], eval_set=(X[450:550], y[450:550]))
    assert a.best_epoch_ <= a.n_epochs_ == min(60, a.best_epoch_ + 3)
    b = REGISTRY.model("lstm")(**params).fit(X[:450], y[:450], eval_set=(X[450:550], y[450:550]))
    np.testing.assert_array_equal(a.predict_proba(X[550:]), b.predict_proba(X[550:]))
    c = REGISTRY.model("lstm")(**(params | {"random_state": 5})).fit(X[:450], y[:450], eval_set=(X[450:550], y[450:550]))
    assert not np.array_equal(a.predict_proba(X[550:]), c.predict_proba(X[550:]))


def test_artifact_refuses_weights_of_other_parameters(tmp_path):
    X, y = _sequential()
    model = REGISTRY.model("lstm")(**SMALL).fit(X, y)
    schema = FeatureSchema(tuple(f"f{i}" for i in range(9)), ({"plugin": "t", "version": "1", "params": {}},))
    path = save_artifact(
        tmp_path / "a", model=model, schema=schema, feature_state={}, label_spec={},
        training_window=TrainingWindow(pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")),
        data_hash="x", scenario_hash="y", metrics={},
    )
    assert sorted(p.name for p in path.iterdir()) == ["feature_state.json", "lstm.safetensors", "lstm_meta.json", "manifest.json"]
    with pytest.raises(ArtifactError, match="do not match the parameters"):
        REGISTRY.model("lstm").load(path, SMALL | {"hidden_size": 7})


def test_ensemble_gives_each_member_its_own_window():
    X, y = _sequential(n=800)
    params = {"members": [{"plugin": "logistic"}, {"plugin": "lstm", "params": SMALL}], "method": "weighted"}
    ensemble = REGISTRY.model("ensemble")(**params)
    assert ensemble.input_window() == 3
    ensemble.fit(X[:600], y[:600])
    logistic, lstm = ensemble.members_
    assert logistic.n_features_in_ == 3 and lstm.n_features_in_ == 9  # the current bar only / all three bars
    expected = (logistic.predict_proba(X[600:, 6:])[:, 1] + lstm.predict_proba(X[600:])[:, 1]) / 2
    np.testing.assert_allclose(ensemble.predict_proba(X[600:])[:, 1], expected, rtol=1e-12)


def test_sequence_rows_are_windows_of_the_plain_rows(small_scenario, registry):
    prepared = prepare(small_scenario.with_data(days=2), registry)
    plain = scenario_pipeline(prepared.scenario, prepared.market, registry)
    lstm = prepared.scenario.model_copy(update={"model": prepared.scenario.model.model_copy(
        update={"plugin": "lstm", "params": {"window": 4}})})
    windowed = scenario_pipeline(lstm, prepared.market, registry)
    assert isinstance(windowed, SequencePipeline) and windowed.warmup_bars == plain.warmup_bars + 3
    assert windowed.schema().hash != plain.schema().hash
    cfg = prepared.scenario.data
    for p in (plain, windowed):
        p.fit(prepared.market[cfg.symbol].bars)
    A = market_features(plain, prepared.market, cfg.symbol, cfg.reference_symbol).to_numpy()
    W = market_features(windowed, prepared.market, cfg.symbol, cfg.reference_symbol)
    assert list(W.columns[-A.shape[1]:]) == list(plain.names) and W.columns[0].endswith("@-3")
    stacked = np.hstack([np.roll(A, k, axis=0) for k in (3, 2, 1, 0)])[3:]
    np.testing.assert_array_equal(W.to_numpy()[3:], stacked)
    assert np.isnan(W.to_numpy()[:3, : A.shape[1]]).all()  # bars before the first one: never finite


@pytest.fixture(scope="module", params=["synthetic ticks", "real klines"])
def lstm_run(request, tmp_path_factory):
    from lbml.scenario import load_scenario

    base = without_calibration(without_edge_gate(load_scenario("scenarios/default.toml")))
    if request.param == "synthetic ticks":  # the engine builds its bars from the ticks
        base = base.with_data(days=3)
    else:  # 3 days of real Binance klines: the engine replays the file's bars
        source = shared_file("klines_1m", "binance_spot_2026-03-23_to_2026-04-22", "BNBUSDT-1m.csv.gz")
        folder = tmp_path_factory.mktemp("data")
        pd.read_csv(source).head(3 * 1440).to_csv(folder / "BNBUSDT-1m.csv", index=False)
        base = base.with_data(source="files", paths=(folder / "BNBUSDT-1m.csv",), symbol="BNBUSDT",
                              reference_symbol=None)
    params = {"window": 6, "hidden_size": 8, "max_epochs": 4, "batch_size": 128, "learning_rate": 0.01, "random_state": 3}
    scenario = base.model_copy(update={"model": base.model.model_copy(update={"plugin": "lstm", "params": params})})
    run_dir, metrics = run_scenario(scenario, load_registry(), tmp_path_factory.mktemp("runs"))
    return scenario, run_dir, metrics


def test_lstm_backtest_predictions_equal_the_model_on_batch_sequences(lstm_run, registry):
    scenario, run_dir, metrics = lstm_run
    prepared = prepare(scenario, registry)
    pipeline = scenario_pipeline(prepared.scenario, prepared.market, registry)
    artifact = load_artifact(run_dir / "model", registry, pipeline.schema())
    assert artifact.manifest["model_plugin"] == "lstm" and (run_dir / "model" / "lstm.safetensors").is_file()
    # the embargo covers the window: a training row within window-1 bars after a test block reads it
    stats = artifact.manifest["metrics"]
    assert stats["embargo_input_window_bars"] == scenario.model.params["window"] - 1
    assert pd.Timedelta(stats["embargo"]) >= pd.Timedelta(minutes=scenario.model.params["window"] - 1)
    pipeline.load_fitted_state(artifact.feature_state)
    cfg = scenario.data
    batch = market_features(pipeline, prepared.market, cfg.symbol, cfg.reference_symbol)
    preds = pd.read_csv(run_dir / "predictions.csv", parse_dates=["ts"]).set_index("ts")
    assert len(preds) > 1000
    expected = artifact.model.predict_proba(batch.loc[preds.index].to_numpy())[:, 1]
    np.testing.assert_allclose(preds["probability_up"].to_numpy(), expected, rtol=1e-9, atol=1e-12)
    window = batch.index[batch.index > prepared.split.test_start]
    # every bar of the backtest window; from ticks all but the last unless an event lands on its
    # close (see test_backtest_e2e)
    funding = prepared.market.funding.get(cfg.symbol)
    complete = metrics["mode"] == "bars" or (funding is not None and window[-1] in funding.index)
    assert list(preds.index) == list(window if complete else window[:-1])
    assert np.isfinite(metrics["oos_logloss"])
    # out-of-fold permutation importance: one row per feature, permuted at every lag of the window
    importance = pd.read_csv(run_dir / "feature_importance.csv", index_col=0)
    assert sorted(importance.index) == sorted(pipeline.bar_names)
