"""Paper replay of bar-only data (``lbml.live.bar_ticks``): each traded bar reaches the venue as the
trades nautilus' backtest exchange makes of it, before the bar itself, and nothing else changes.
End to end (predictions and fills equal to the backtest's) in ``tests/test_acceptance.py``."""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from lbml.errors import ConfigError, DataError
from lbml.data.frames import MarketData
from lbml.live.events import BAR, BAR_FLOW, BAR_TRADE, replay_events
from lbml.live.session import PaperOptions, run_paper
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare

from .conftest import shared_file, without_calibration, without_edge_gate
from .test_acceptance import _both_modes, short_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    registry = load_registry()
    scenario = short_scenario("crash_may2021", tmp_path_factory.mktemp("crash"))
    return scenario, registry, prepare(scenario, registry)


def test_a_bar_is_replayed_as_its_trades_then_itself(crash):
    scenario, _, prepared = crash
    market, start = prepared.market, prepared.split.test_start
    symbols = [scenario.data.reference_symbol, scenario.data.symbol]
    with pytest.raises(DataError, match="needs trade ticks"):  # the ZeroMQ server's replay: no bars
        next(replay_events(market, symbols, start))
    events = list(replay_events(market, symbols, start, bars=True))
    bars = market[scenario.data.symbol].bars
    bars = bars.loc[bars.index > start]
    assert [e.ts for e in events if e.kind == BAR and e.symbol == scenario.data.symbol] == bars.index.asi8.tolist()
    assert {e.symbol for e in events if e.kind == BAR_TRADE} == {scenario.data.symbol}  # the venue's only
    last = None
    for ts, bar in zip(bars.index.asi8[:200], bars.itertuples()):
        at = [e for e in events if e.ts == ts]
        trades = [e for e in at if e.kind == BAR_TRADE]
        assert at[: len(trades)] == trades and [e.kind for e in at[len(trades):]] == [BAR, BAR]  # trades first
        assert at[-1].symbol == scenario.data.symbol  # the reference bar, then the traded one
        assert (at[-1].a, at[-1].b, at[-1].c, at[-1].d, at[-1].e) == (bar.open, bar.high, bar.low, bar.close, bar.volume)
        # nautilus' steps: open (with the bar's volume, as the next-open fill), high, low, close,
        # each only when it moves the last price
        prices = [bar.open]
        if bar.high > prices[-1]:
            prices.append(bar.high)
        if bar.low < prices[-1]:
            prices.append(bar.low)
        if bar.close != prices[-1]:
            prices.append(bar.close)
        assert [e.a for e in trades] == prices
        assert trades[0].b == bar.volume and trades[0].d == 1.0 and all(e.d == 0.0 for e in trades[1:])
        assert trades[0].c == (1.0 if last is None or bar.open > last else -1.0)
        last = prices[-1]


def test_a_next_close_bar_fill_is_refused_in_paper_before_anything_is_written(crash, tmp_path):
    scenario, registry, prepared = crash
    closing = scenario.model_copy(update={"venue": scenario.venue.model_copy(update={"bar_fill": "next_close"})})
    with pytest.raises(ConfigError, match="next bar's open"):
        run_paper(closing, registry, tmp_path / "state", PaperOptions(speed=1e9, bars=10, console=False),
                  prepared=prepared)
    assert not (tmp_path / "state").exists()


def test_a_bars_taker_buy_volume_goes_before_it_as_the_backtests_bar_flow(crash):
    scenario, _, prepared = crash
    market, start, symbol = prepared.market, prepared.split.test_start, scenario.data.symbol
    data = market[symbol]
    bars = data.bars.assign(taker_buy_volume=data.bars["volume"] * 0.25)
    bars.iloc[-1, bars.columns.get_loc("taker_buy_volume")] = float("nan")  # a bar without it gets none
    flowing = MarketData({**market.instruments, symbol: replace(data, bars=bars)}, market.funding, market.bar_minutes)
    events = list(replay_events(flowing, [symbol], start, bars=True))
    flows = [e for e in events if e.kind == BAR_FLOW]
    window = bars.loc[bars.index > start]
    assert [(e.ts, e.a) for e in flows] == list(zip(window.index.asi8[:-1].tolist(), window["taker_buy_volume"][:-1]))
    kinds = {ts: [e.kind for e in events if e.ts == ts] for ts in window.index.asi8[:50].tolist()}
    assert all(k[-2:] == [BAR_FLOW, BAR] and set(k[:-2]) == {BAR_TRADE} for k in kinds.values())


@pytest.mark.timeout(900)
def test_a_liquidation_fills_alike_in_paper_and_backtest(tmp_path):
    """Regression: the paper venue held a submitted order INITIALIZED during its latency, so the
    liquidation guard, seeing no live stop on the entry's own bar, placed a second one; the older
    stop (priced before the entry's slippage charge) then filled the liquidation 0.14 lower than
    the backtest's (544.9729 against 545.1091 on the full crash replay). A 10x long entered two and
    a half hours before the 13 May 2021 low is liquidated inside the replayed window."""
    cut = {}
    for key, name in (("paths", "BNBUSDT-1m.csv.gz"), ("reference_paths", "BTCUSDT-1m.csv.gz")):
        frame = pd.read_csv(shared_file("klines_1m", "binance_spot_2021-04-02_to_2021-05-14", name))
        opened = pd.to_datetime(frame["open_time"], unit="ms", utc=True)
        frame = frame.loc[opened < pd.Timestamp("2021-05-13 00:30", tz="UTC")].tail(2 * 1440)
        cut[key] = (tmp_path / name,)
        frame.to_csv(cut[key][0], index=False)
    base = load_scenario(ROOT / "scenarios" / "crash_may2021.toml").with_data(**cut)
    scenario = without_edge_gate(without_calibration(base.model_copy(update={
        "split": base.split.model_copy(update={"train_fraction": 1 - 180 / (2 * 1440)}),  # from 21:30
        "model": base.model.model_copy(update={"params": {**base.model.params, "n_estimators": 40}}),
        "strategy": base.strategy.model_copy(update={"max_leverage": 10.0}),
        "leverage": base.leverage.model_copy(update={"margin_leverage": 10.0}),
        "robustness": base.robustness.model_copy(update={"enabled": False}),
        "report": base.report.model_copy(update={"tearsheet": False}),
    })))
    traded, _ = _both_modes(scenario, load_registry(), tmp_path)  # fills equal, guarantees held
    (run,) = [d for d in (tmp_path / "runs").iterdir() if (d / "fills.csv").exists()]
    fills = pd.read_csv(run / "fills.csv")
    assert (fills["exit_reason"] == "liquidation").sum() == 1 and traded >= 1
