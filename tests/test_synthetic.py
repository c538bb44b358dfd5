"""The embedded synthetic market: conventions, determinism, stylised facts, planted edge, I/O."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.data.frames import BAR_COLUMNS, QUOTE_COLUMNS, TRADE_COLUMNS, MarketData
from lbml.data.synthetic import (
    MANIFEST_NAME,
    SyntheticMarketConfig,
    generate_market,
    read_market,
    write_market,
)
from lbml.errors import ConfigError, DataError

LEADER, FOLLOWER = "BTCUSDT", "BNBUSDT"
NS_PER_MINUTE = 60_000_000_000


@pytest.fixture(scope="module")
def market() -> MarketData:
    """30 days, default config (edge = 0): the statistical tests need the full length."""
    return generate_market(SyntheticMarketConfig())


@pytest.fixture(scope="module")
def edge_market() -> MarketData:
    return generate_market(SyntheticMarketConfig(edge=0.1))


@pytest.fixture(scope="module")
def small_config() -> SyntheticMarketConfig:
    return SyntheticMarketConfig(days=2, seed=11)


@pytest.fixture(scope="module")
def small(small_config: SyntheticMarketConfig) -> MarketData:
    return generate_market(small_config)


def minute_returns(market: MarketData, symbol: str) -> pd.Series:
    return np.log(market[symbol].bars["close"]).diff().dropna()


def hit_rate(returns: pd.Series) -> tuple[float, int]:
    """Share of minutes whose return sign equals the sign of the previous 15-minute return."""
    past = returns.rolling(15).sum().shift(1)
    usable = past.notna() & (past != 0) & (returns != 0)
    hits = np.sign(past[usable]) == np.sign(returns[usable])
    return float(hits.mean()), int(usable.sum())


def assert_markets_equal(left: MarketData, right: MarketData) -> None:
    assert list(left.instruments) == list(right.instruments)
    assert left.bar_minutes == right.bar_minutes
    for symbol, data in left.instruments.items():
        other = right[symbol]
        assert data.source == other.source
        for kind in ("bars", "trades", "quotes", "depth"):
            pd.testing.assert_frame_equal(
                getattr(data, kind), getattr(other, kind), check_exact=True, check_freq=False
            )
    assert list(left.funding) == list(right.funding)
    for symbol, frame in left.funding.items():
        pd.testing.assert_frame_equal(
            frame, right.funding[symbol], check_exact=True, check_freq=False
        )


# ----------------------------------------------------------------------------- conventions


def test_frames_follow_canonical_conventions(small: MarketData) -> None:
    assert small.bar_minutes == 1
    assert list(small.instruments) == [LEADER, FOLLOWER]
    for symbol, data in small.instruments.items():
        assert data.symbol == symbol
        assert data.source == "synthetic seed=11 days=2"
        assert data.has_ticks
        assert tuple(data.trades.columns) == TRADE_COLUMNS
        assert tuple(data.quotes.columns) == QUOTE_COLUMNS
        assert set(BAR_COLUMNS) <= set(data.bars.columns)
        assert data.trades["side"].dtype == np.int8
        assert set(np.unique(data.trades["side"])) == {-1, 1}
        for frame in (data.trades, data.quotes, data.bars, small.funding[symbol]):
            assert frame.index.name == "ts"
            assert str(frame.index.dtype) == "datetime64[ns, UTC]"
            assert (frame.dtypes[frame.columns != "side"] == np.float64).all()


def test_every_minute_has_a_bar(small: MarketData, small_config: SyntheticMarketConfig) -> None:
    start = pd.Timestamp(small_config.start, tz="UTC")
    expected = pd.date_range(
        start + pd.Timedelta(minutes=1), periods=small_config.minutes, freq="min", tz="UTC"
    )
    for data in small.instruments.values():
        assert data.bars.index.equals(expected)
        assert (data.bars["volume"] > 0).all()


def test_ticks_strictly_increasing_and_inside_minutes(small: MarketData) -> None:
    for data in small.instruments.values():
        ns = data.trades.index.asi8
        assert (np.diff(ns) > 0).all()
        assert (ns % NS_PER_MINUTE != 0).all()
        quote_ns = data.quotes.index.asi8
        assert (np.diff(quote_ns) > 0).all()
        assert (quote_ns % NS_PER_MINUTE != 0).all()
        # each quote sits 1 µs before its trade, after the previous trade, in the same minute
        assert (quote_ns == ns - 1_000).all()
        assert (quote_ns[1:] > ns[:-1]).all()
        assert (quote_ns // NS_PER_MINUTE == ns // NS_PER_MINUTE).all()


def test_prices_on_tick_grid_and_near_start_prices(small: MarketData) -> None:
    for symbol, start_price in ((LEADER, 60_000.0), (FOLLOWER, 600.0)):
        data = small[symbol]
        for values in (data.trades["price"], data.quotes["bid"], data.quotes["ask"]):
            cents = values.to_numpy() * 100
            assert np.abs(cents - np.round(cents)).max() < 1e-6
        assert abs(data.trades["price"].iloc[0] / start_price - 1) < 0.01
        assert (data.trades["size"] > 0).all()


def test_quotes_consistent_with_trades(small: MarketData) -> None:
    for data in small.instruments.values():
        trades, quotes = data.trades, data.quotes
        assert (quotes["bid"] > 0).all()
        assert (quotes["bid"] < quotes["ask"]).all()
        price = trades["price"].to_numpy()
        buyer = trades["side"].to_numpy() > 0
        assert (price[buyer] == quotes["ask"].to_numpy()[buyer]).all()
        assert (price[~buyer] == quotes["bid"].to_numpy()[~buyer]).all()
        spread_ticks = np.round((quotes["ask"] - quotes["bid"]).to_numpy() / 0.01)
        assert 1.5 < spread_ticks.mean() < 6
        # L1 depth absorbs a 200k USDT market order on either side
        assert (quotes["ask_size"] * quotes["ask"] >= 200_000).all()
        assert (quotes["bid_size"] * quotes["bid"] >= 200_000).all()


def test_aggressor_side_mostly_follows_price_move(small: MarketData) -> None:
    for data in small.instruments.values():
        move = np.sign(data.trades["price"].diff())
        moved = move.notna() & (move != 0)
        agreement = (move[moved] == data.trades["side"][moved]).mean()
        assert 0.75 < agreement < 0.85


# ----------------------------------------------------------------------------- determinism


def test_same_config_gives_identical_market(
    small: MarketData, small_config: SyntheticMarketConfig
) -> None:
    assert_markets_equal(small, generate_market(small_config))


def test_different_seeds_differ(small: MarketData) -> None:
    other = generate_market(SyntheticMarketConfig(days=2, seed=12))
    for symbol in small.instruments:
        assert not np.array_equal(
            small[symbol].bars["close"].to_numpy(), other[symbol].bars["close"].to_numpy()
        )


def test_leader_independent_of_other_symbols() -> None:
    both = generate_market(SyntheticMarketConfig(days=1))
    alone = generate_market(SyntheticMarketConfig(days=1, symbols=(LEADER,)))
    pd.testing.assert_frame_equal(both[LEADER].trades, alone[LEADER].trades, check_exact=True)


def test_progress_bar_does_not_change_output(capsys: pytest.CaptureFixture[str]) -> None:
    config = SyntheticMarketConfig(days=1, seed=3)
    quiet = generate_market(config)
    loud = generate_market(config, progress=True)
    assert "synthetic market" in capsys.readouterr().err
    assert_markets_equal(quiet, loud)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 0},
        {"seed": -1},
        {"symbols": ()},
        {"symbols": ("BTCUSDT", "BTCUSDT")},
        {"ticks_per_minute": 0.0},
        {"edge": float("nan")},
        {"start": "not a date"},
        {"start": "2024-01-01 00:00:30"},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SyntheticMarketConfig(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- stylised facts


def test_daily_volatility_in_range(market: MarketData) -> None:
    daily = minute_returns(market, LEADER).std() * np.sqrt(1440)
    assert 0.02 <= daily <= 0.04


def test_leader_follower_correlation(market: MarketData) -> None:
    leader = minute_returns(market, LEADER)
    follower = minute_returns(market, FOLLOWER)
    corr = leader.corr(follower)
    assert 0.5 <= corr <= 0.9
    beta = np.cov(follower, leader)[0, 1] / leader.var()
    assert 0.9 < beta < 1.3


def test_volatility_clustering(market: MarketData) -> None:
    for symbol in (LEADER, FOLLOWER):
        returns = minute_returns(market, symbol)
        assert returns.abs().autocorr(1) > 0.1
        assert returns.abs().autocorr(60) > 0.05  # regimes make clustering long-lived
        assert abs(returns.autocorr(1)) < 0.03  # clustering of size, not of sign


def test_fat_tails(market: MarketData) -> None:
    for symbol in (LEADER, FOLLOWER):
        assert minute_returns(market, symbol).kurt() > 1


def test_busier_minutes_are_more_volatile(market: MarketData) -> None:
    bars = market[LEADER].bars
    absolute = np.log(bars["close"]).diff().abs()
    assert bars["volume"].corr(absolute, method="spearman") > 0.05


def test_funding_every_eight_hours(market: MarketData) -> None:
    for symbol, frame in market.funding.items():
        index = frame.index
        assert len(frame) == 30 * 3
        assert set(index.hour) == {0, 8, 16}
        assert (index.minute == 0).all() and (index.second == 0).all()
        assert (np.diff(index.asi8) == 8 * 3600 * 10**9).all()
        assert index[0] == pd.Timestamp("2024-01-01 08:00", tz="UTC")
        rate = frame["rate"]
        assert rate.abs().max() <= 0.003
        assert rate.std() > 0
        assert abs(rate.mean()) < 0.001


def test_funding_tilted_by_last_eight_hours(market: MarketData) -> None:
    for symbol, frame in market.funding.items():
        close = market[symbol].bars["close"]
        now = np.log(close.reindex(frame.index)).to_numpy()
        before = np.log(close.reindex(frame.index - pd.Timedelta(hours=8))).to_numpy()
        past = pd.Series(now - before, index=frame.index)
        assert frame["rate"].corr(past) > 0.3


# ----------------------------------------------------------------------------- planted edge


def test_no_edge_means_coin_flip(market: MarketData) -> None:
    rate, count = hit_rate(minute_returns(market, LEADER))
    noise = 0.5 / np.sqrt(count)
    assert abs(rate - 0.5) < 3 * noise


def test_edge_makes_momentum_predictive(edge_market: MarketData) -> None:
    rate, count = hit_rate(minute_returns(edge_market, LEADER))
    noise = 0.5 / np.sqrt(count)
    assert rate > 0.5 + 6 * noise
    assert rate < 0.6  # weak, not a money printer


def test_edge_is_recorded_in_source(edge_market: MarketData) -> None:
    assert edge_market[LEADER].source == "synthetic seed=7 days=30 edge=0.1"


# ----------------------------------------------------------------------------- files


def test_write_read_round_trip(
    small: MarketData, small_config: SyntheticMarketConfig, tmp_path: Path
) -> None:
    paths = write_market(small, tmp_path, config=small_config)
    assert paths[-1] == tmp_path / MANIFEST_NAME
    assert all(path.is_file() for path in paths)
    assert sum(path.suffix == ".parquet" for path in paths) == 5 * len(small.instruments)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 11
    assert manifest["config"]["days"] == 2
    assert manifest["config"]["symbols"] == [LEADER, FOLLOWER]
    trades_file = manifest["instruments"][LEADER]["frames"]["trades"]
    assert manifest["files"][trades_file]["rows"] == len(small[LEADER].trades)
    assert len(manifest["files"][trades_file]["sha256"]) == 64
    assert_markets_equal(small, read_market(tmp_path))


def test_write_without_config_records_seed(small: MarketData, tmp_path: Path) -> None:
    write_market(small, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 11
    assert manifest["config"] is None


@pytest.fixture()
def written(small: MarketData, tmp_path: Path) -> Path:
    write_market(small, tmp_path)
    return tmp_path


def assert_one_line_data_error(directory: Path, fragment: str) -> None:
    with pytest.raises(DataError) as info:
        read_market(directory)
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message


def test_read_missing_directory(tmp_path: Path) -> None:
    assert_one_line_data_error(tmp_path / "nowhere", "manifest not found")


def test_read_corrupt_parquet(written: Path) -> None:
    target = written / f"{LEADER}.trades.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    assert_one_line_data_error(written, "sha256 mismatch")


def test_read_missing_parquet(written: Path) -> None:
    (written / f"{FOLLOWER}.quotes.parquet").unlink()
    assert_one_line_data_error(written, "missing")


def test_read_truncated_manifest(written: Path) -> None:
    manifest = written / MANIFEST_NAME
    manifest.write_text(manifest.read_text()[:100])
    assert_one_line_data_error(written, "unreadable manifest")


def test_read_manifest_with_missing_entry(written: Path) -> None:
    manifest = written / MANIFEST_NAME
    content = json.loads(manifest.read_text())
    del content["files"][f"{LEADER}.bars.parquet"]
    manifest.write_text(json.dumps(content))
    assert_one_line_data_error(written, "malformed manifest")


def test_read_rejects_rewritten_file_with_matching_hash(written: Path) -> None:
    """A frame that passes the hash but breaks the conventions is still refused."""
    target = written / f"{LEADER}.trades.parquet"
    frame = pd.read_parquet(target).reset_index(drop=True)
    frame.to_parquet(target)
    manifest = written / MANIFEST_NAME
    content = json.loads(manifest.read_text())
    content["files"][target.name]["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(content))
    assert_one_line_data_error(written, "index must be")


def test_read_refuses_paths_outside_directory(written: Path) -> None:
    manifest = written / MANIFEST_NAME
    content = json.loads(manifest.read_text())
    content["instruments"][LEADER]["frames"]["bars"] = "../escape.parquet"
    manifest.write_text(json.dumps(content))
    assert_one_line_data_error(written, "leaves the market directory")
