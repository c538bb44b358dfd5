"""The embedded synthetic market: deterministic trade ticks, quotes and funding from a seed.

lbml must run on a machine without any data file, so it carries its own market. The model works
in two layers:

1. **Minutes.** A hidden regime Markov chain (calm / volatile / trending) scales volatility, trade
   activity and trade sizes and, in the trending regime, adds a small drift. The leader (the first
   symbol, BTC by default) follows a GARCH(1,1) with Student-t shocks and Poisson jumps; every
   other symbol is 1.1 times the leader plus its own GARCH(1,1) part and rarer jumps of its own.
2. **Ticks.** Each minute holds ``1 + Poisson(ticks_per_minute x activity)`` trades at random times
   strictly inside the minute. Their prices follow a Brownian bridge from the previous minute's
   close to this minute's close (the last trade of the minute *is* the close), rounded to 0.01.
   One top-of-book quote precedes every trade by 1 µs and is consistent with it (a buyer-aggressor
   trade prints at the ask, a seller-aggressor trade at the bid).

Funding settles every 8 h (00:00, 08:00, 16:00 UTC) with a mean-reverting rate tilted by the
symbol's return over the previous 8 h.

A 5-level book summary (``depth``: base-asset size on the best five levels per side) is snapshot
every 10 s at hh:mm:05, hh:mm:15, ...: per level a log-normal notional on the scale of the quotes'
level-1 notional, thinner in the volatile regime, converted at the last trade price. It comes from
its own random stream, so trades, quotes and funding are unchanged by it.

Everything is drawn from ``numpy.random.Generator`` streams derived from the seed, so the same
config always gives bit-identical frames. The only Python loops run per minute (the GARCH
recursion), per regime segment and per funding settlement; ticks are vectorised.
"""

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lbml.data.frames import (
    BAR_COLUMNS,
    DEPTH_COLUMNS,
    FUNDING_COLUMNS,
    QUOTE_COLUMNS,
    TRADE_COLUMNS,
    InstrumentData,
    MarketData,
    bars_from_trades,
)
from lbml.errors import ConfigError, DataError

__all__ = [
    "MANIFEST_NAME",
    "PRICE_TICK",
    "SIZE_STEP",
    "SyntheticMarketConfig",
    "generate_market",
    "read_market",
    "write_market",
]

PRICE_TICK = 0.01
SIZE_STEP = 0.001
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "lbml.market"
MANIFEST_VERSION = 1

_NS_PER_MINUTE = 60_000_000_000
_QUOTE_LEAD_NS = 1_000  # the quote precedes its trade by 1 µs
_MIN_GAP_NS = 2_000  # >= 2 µs between trades, so a quote never jumps ahead of the previous trade
_FUNDING_PERIOD = pd.Timedelta(hours=8)
_MINUTES_PER_8H = 480

# --- regime chain: 0 calm, 1 volatile, 2 trending -------------------------------------------------
_MEAN_DURATION_MIN = np.array([720.0, 180.0, 360.0])  # 12 h, 3 h, 6 h
_REGIME_EXIT = np.array(  # where the chain goes when it leaves a state
    [
        [0.0, 0.5, 0.5],
        [0.7, 0.0, 0.3],
        [0.6, 0.4, 0.0],
    ]
)
_VOL_MULT = np.array([0.8, 1.8, 1.0])
_ACTIVITY_MULT = np.array([1.0, 2.5, 1.5])
_SIZE_MULT = np.array([1.0, 2.0, 1.3])
_TREND_DRIFT = 0.03  # drift in the trending regime, in units of the minute's sigma

# --- leader and follower minute dynamics --------------------------------------------------------
_BASE_SIGMA = 0.00065  # per-minute sigma before the regime multiplier (~0.07 % on average)
_GARCH_ALPHA, _GARCH_BETA = 0.08, 0.90
_IDIO_ALPHA, _IDIO_BETA = 0.06, 0.92
_GARCH_H_BOUNDS = (0.05, 25.0)
_GARCH_SHOCK_CAP = 6.0  # a jump feeds GARCH as at most a 6-sigma shock
_T_DF = 5.0
_JUMPS_PER_DAY = 4.0
_JUMP_SCALE = 0.002
_JUMP_DF = 3.0
_JUMP_CAP = 0.03
_FOLLOWER_BETA = 1.1
_IDIO_SCALE = 1.0  # follower idiosyncratic sigma relative to the leader's base sigma
_FOLLOWER_JUMPS_PER_DAY = 1.5
_START_PRICES = {
    "BTCUSDT": 60_000.0,
    "BNBUSDT": 600.0,
    "ETHUSDT": 3_000.0,
    "SOLUSDT": 150.0,
}
_DEFAULT_START_PRICE = 100.0

# --- ticks and quotes ---------------------------------------------------------------------------
_SIDE_AGREEMENT = 0.8
_TRADE_NOTIONAL_MEDIAN = 1_500.0
_TRADE_NOTIONAL_SIGMA = 1.0
_SPREAD_TICKS_MEAN = 1.5  # extra ticks beyond one, at the average sigma
_SPREAD_TICKS_CAP = 50
_QUOTE_NOTIONAL_FLOOR = 250_000.0
_QUOTE_NOTIONAL_MEDIAN_EXTRA = 250_000.0
_QUOTE_NOTIONAL_SIGMA = 0.5

# --- funding ------------------------------------------------------------------------------------
_FUNDING_BASE = 0.0001
_FUNDING_PERSISTENCE = 0.7
_FUNDING_TILT = 0.01
_FUNDING_NOISE = 0.00005
_FUNDING_CAP = 0.003

# --- random stream ids (SeedSequence spawn keys) ------------------------------------------------
_STREAM_REGIME = 0
_STREAM_LEADER = 1
_STREAM_FOLLOWER = 2
_STREAM_TICKS = 3
_STREAM_FUNDING = 4
_STREAM_DEPTH = 5

# --- depth (5-level book summary) ---------------------------------------------------------------
_DEPTH_PERIOD_NS = 10_000_000_000
_DEPTH_OFFSET_NS = 5_000_000_000
_DEPTH_LEVELS = 5


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Configure the embedded synthetic market.

    Parameters
    ----------
    days : int
        Length of the market in whole days (1,440 one-minute bars per day per symbol).
    seed : int
        Seed of every random stream; the same config always gives bit-identical frames.
    start : str
        UTC start time (anything ``pandas.Timestamp`` parses; must fall on a whole minute).
    symbols : tuple of str
        Symbols to generate. The first is the leader; the others are ``1.1 x leader`` plus their
        own idiosyncratic part.
    ticks_per_minute : float
        Mean number of trade arrivals per minute in the calm regime (each minute also gets one
        guaranteed trade).
    edge : float
        Planted predictability. The leader's log return over minute ``t`` is::

            r_t = mu_t + sigma_t * z_t + J_t
            mu_t = trend_t * 0.03 * sigma_t + edge * sigma_t * sign(x_{t-1} - x_{t-16})

        where ``x`` is the leader's unrounded log close, ``sigma_t`` its conditional (GARCH times
        regime) volatility, ``z_t`` a unit-variance Student-t(5) shock, ``J_t`` a jump and
        ``trend_t`` is +1 / -1 in the trending regime and 0 otherwise. The sign term is the sign of
        the last 15 one-minute returns' sum (``x_{-1}`` is the start price) and is 0 for the first
        15 minutes. Followers inherit it through their beta. ``edge = 0`` plants no predictability
        (only the weak trend drift, symmetric across trends, remains: the 15-minute sign then hits
        the next minute's sign 50.2 % of the time); ``edge = 0.1`` lifts that hit rate to about
        55 % (30 days, seed 7).
    trend_drift : float
        Drift in the trending regime in units of sigma (the 0.03 above). ``trend_drift = 0`` with
        ``edge = 0`` gives a martingale: volatility clusters and jumps, but no predictable mean.
    """

    days: int = 30
    seed: int = 7
    start: str = "2024-01-01"
    symbols: tuple[str, ...] = ("BTCUSDT", "BNBUSDT")
    ticks_per_minute: float = 12.0
    edge: float = 0.0
    trend_drift: float = _TREND_DRIFT

    def __post_init__(self) -> None:
        _require(
            _is_int(self.days) and self.days >= 1,
            f"days must be an integer >= 1, got {self.days!r}",
        )
        _require(
            _is_int(self.seed) and self.seed >= 0,
            f"seed must be an integer >= 0, got {self.seed!r}",
        )
        _require(
            isinstance(self.symbols, tuple)
            and len(self.symbols) > 0
            and all(isinstance(name, str) and name for name in self.symbols)
            and len(set(self.symbols)) == len(self.symbols),
            f"symbols must be a non-empty tuple of distinct names, got {self.symbols!r}",
        )
        _require(
            _is_real(self.ticks_per_minute) and 0 < self.ticks_per_minute <= 1_000,
            f"ticks_per_minute must be in (0, 1000], got {self.ticks_per_minute!r}",
        )
        _require(
            _is_real(self.edge) and abs(self.edge) <= 1.0,
            f"edge must be in [-1, 1], got {self.edge!r}",
        )
        _require(
            _is_real(self.trend_drift) and 0.0 <= self.trend_drift <= 1.0,
            f"trend_drift must be in [0, 1], got {self.trend_drift!r}",
        )
        self.start_timestamp()  # validates

    def start_timestamp(self) -> pd.Timestamp:
        """Return ``start`` as a UTC timestamp with nanosecond resolution.

        Raises
        ------
        ConfigError
            If ``start`` cannot be parsed or is not on a whole minute.
        """
        try:
            ts = pd.Timestamp(self.start) if isinstance(self.start, str) else pd.NaT
        except (TypeError, ValueError):
            ts = pd.NaT
        _require(ts is not pd.NaT, f"start must be a date string, got {self.start!r}")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        ts = ts.as_unit("ns")
        _require(ts.value % _NS_PER_MINUTE == 0, f"start {self.start!r} is not on a whole minute")
        return ts

    @property
    def minutes(self) -> int:
        """Number of one-minute bars per symbol."""
        return self.days * 1440

    def source(self) -> str:
        """Return the human-readable origin stored in each ``InstrumentData.source``."""
        text = f"synthetic seed={self.seed} days={self.days}"
        return text if self.edge == 0 else f"{text} edge={self.edge:g}"

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-serialisable values."""
        values = dataclasses.asdict(self)
        values["symbols"] = list(self.symbols)
        return values


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(f"synthetic market: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


@dataclass(frozen=True)
class _Regimes:
    state: np.ndarray  # int8 per minute
    trend: np.ndarray  # float64 per minute: +1 / -1 while trending, else 0


@dataclass(frozen=True)
class _MinutePath:
    log_close: np.ndarray  # unrounded log close per minute, length n + 1 (index 0 = start)
    sigma: np.ndarray  # conditional diffusive sigma per minute, length n


# ----------------------------------------------------------------------------- public API


def generate_market(config: SyntheticMarketConfig, *, progress: bool = False) -> MarketData:
    """Generate the synthetic market described by ``config``.

    Parameters
    ----------
    config : SyntheticMarketConfig
        What to generate; the same config always yields bit-identical frames.
    progress : bool, default False
        Show a tqdm progress bar on stderr.

    Returns
    -------
    MarketData
        One ``InstrumentData`` per symbol with trades, quotes and 1-minute bars built by
        ``bars_from_trades`` (one bar for every minute), funding per symbol, ``bar_minutes=1``.
    """
    start = config.start_timestamp()
    n = config.minutes
    steps = 2 + 3 * len(config.symbols)
    with tqdm(total=steps, desc="synthetic market", disable=not progress, leave=False) as bar:
        regimes = _simulate_regimes(_rng(config.seed, _STREAM_REGIME), n)
        bar.update()
        leader = _simulate_leader(_rng(config.seed, _STREAM_LEADER), regimes, config.edge, config.trend_drift)
        bar.update()
        instruments: dict[str, InstrumentData] = {}
        funding: dict[str, pd.DataFrame] = {}
        for index, symbol in enumerate(config.symbols):
            path = leader
            if index > 0:
                path = _simulate_follower(
                    _rng(config.seed, _STREAM_FOLLOWER, index), regimes, leader
                )
            path = _shift_to_start_price(path, _START_PRICES.get(symbol, _DEFAULT_START_PRICE))
            bar.update()
            trades, quotes = _simulate_ticks(
                _rng(config.seed, _STREAM_TICKS, index),
                path,
                regimes,
                start,
                config.ticks_per_minute,
            )
            bar.update()
            instruments[symbol] = InstrumentData(
                symbol=symbol,
                bars=bars_from_trades(trades, 1),
                trades=trades,
                quotes=quotes,
                source=config.source(),
                depth=_simulate_depth(
                    _rng(config.seed, _STREAM_DEPTH, index), trades, regimes, start
                ),
            )
            funding[symbol] = _simulate_funding(
                _rng(config.seed, _STREAM_FUNDING, index), path.log_close, start
            )
            bar.update()
    return MarketData(instruments=instruments, funding=funding, bar_minutes=1)


def write_market(
    market: MarketData,
    out_dir: Path,
    *,
    config: SyntheticMarketConfig | None = None,
) -> list[Path]:
    """Write ``market`` as parquet files plus a JSON manifest.

    Parameters
    ----------
    market : MarketData
        Any market data (synthetic or imported) in the canonical frame conventions.
    out_dir : Path
        Target directory; created if missing. Files of the same name are overwritten.
    config : SyntheticMarketConfig or None
        The config that generated ``market``, recorded in the manifest when given.

    Returns
    -------
    list of Path
        The parquet files written, then the manifest (``manifest.json``), which records the config,
        the seed, each file's row count and its SHA-256.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    files: dict[str, dict[str, Any]] = {}
    instruments: dict[str, dict[str, Any]] = {}
    for symbol, data in market.instruments.items():
        entry: dict[str, Any] = {"source": data.source, "frames": {}}
        for kind in ("bars", "trades", "quotes", "depth"):
            frame = getattr(data, kind)
            if frame is None:
                continue
            name = _unique_name(f"{_file_stem(symbol)}.{kind}.parquet", files)
            files[name] = _write_frame(frame, out_dir / name)
            entry["frames"][kind] = name
            written.append(out_dir / name)
        instruments[symbol] = entry
    funding: dict[str, str] = {}
    for symbol, frame in market.funding.items():
        name = _unique_name(f"{_file_stem(symbol)}.funding.parquet", files)
        files[name] = _write_frame(frame, out_dir / name)
        funding[symbol] = name
        written.append(out_dir / name)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "bar_minutes": market.bar_minutes,
        "seed": config.seed if config is not None else _seed_from_sources(market),
        "config": config.to_dict() if config is not None else None,
        "symbols": list(market.instruments),  # order matters: the first is the leader
        "instruments": instruments,
        "funding": funding,
        "files": files,
    }
    manifest_path = out_dir / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    written.append(manifest_path)
    return written


def read_market(out_dir: Path) -> MarketData:
    """Read a market written by :func:`write_market`, verifying every file.

    Parameters
    ----------
    out_dir : Path
        Directory holding ``manifest.json`` and the parquet files it lists.

    Returns
    -------
    MarketData
        Frames equal to those written.

    Raises
    ------
    DataError
        If the manifest or a file is missing, unreadable, fails its SHA-256 or row-count check, or
        does not follow the canonical frame conventions.
    """
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir / MANIFEST_NAME)
    try:
        files: dict[str, dict[str, Any]] = manifest["files"]
        instruments: dict[str, InstrumentData] = {}
        for symbol in manifest["symbols"]:
            entry = manifest["instruments"][symbol]
            frames = {
                kind: _read_frame(_member(out_dir, name), files[name], kind)
                for kind, name in entry["frames"].items()
            }
            instruments[symbol] = InstrumentData(
                symbol=symbol,
                bars=frames.get("bars"),
                trades=frames.get("trades"),
                quotes=frames.get("quotes"),
                depth=frames.get("depth"),
                source=str(entry["source"]),
            )
        funding = {
            symbol: _read_frame(_member(out_dir, name), files[name], "funding")
            for symbol, name in manifest["funding"].items()
        }
        bar_minutes = int(manifest["bar_minutes"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(
            f"{out_dir / MANIFEST_NAME}: malformed manifest ({type(exc).__name__}: {exc})"
        ) from None
    return MarketData(instruments=instruments, funding=funding, bar_minutes=bar_minutes)


# ----------------------------------------------------------------------------- minute dynamics


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _simulate_regimes(rng: np.random.Generator, n: int) -> _Regimes:
    state = np.empty(n, dtype=np.int8)
    trend = np.zeros(n, dtype=np.float64)
    current = int(rng.choice(3, p=[0.6, 0.15, 0.25]))
    t = 0
    while t < n:
        length = int(rng.geometric(1.0 / _MEAN_DURATION_MIN[current]))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        end = min(n, t + length)
        state[t:end] = current
        if current == 2:
            trend[t:end] = direction
        t = end
        current = int(rng.choice(3, p=_REGIME_EXIT[current]))
    return _Regimes(state=state, trend=trend)


def _student_t(rng: np.random.Generator, df: float, size: int) -> np.ndarray:
    return rng.standard_t(df, size) / math.sqrt(df / (df - 2.0))


def _jumps(rng: np.random.Generator, n: int, per_day: float) -> np.ndarray:
    counts = rng.poisson(per_day / 1440.0, n)
    sizes = np.clip(_JUMP_SCALE * rng.standard_t(_JUMP_DF, n), -_JUMP_CAP, _JUMP_CAP)
    return np.where(counts > 0, sizes * np.sqrt(counts), 0.0)


def _simulate_leader(
    rng: np.random.Generator, regimes: _Regimes, edge: float, trend_drift: float = _TREND_DRIFT
) -> _MinutePath:
    n = len(regimes.state)
    shocks = _student_t(rng, _T_DF, n).tolist()
    jumps = _jumps(rng, n, _JUMPS_PER_DAY).tolist()
    scale = (_BASE_SIGMA * _VOL_MULT[regimes.state]).tolist()
    trend = (trend_drift * regimes.trend).tolist()
    omega = 1.0 - _GARCH_ALPHA - _GARCH_BETA
    h_low, h_high = _GARCH_H_BOUNDS
    x = [0.0] * (n + 1)
    sigma = [0.0] * n
    h = 1.0
    for t in range(n):
        sig = scale[t] * math.sqrt(h)
        signal = 0.0
        if edge != 0.0 and t >= 15:
            past = x[t] - x[t - 15]  # x[t] is the log close of minute t-1 (x[0] = start)
            signal = edge * ((past > 0.0) - (past < 0.0))
        surprise = sig * shocks[t] + jumps[t]
        x[t + 1] = x[t] + (trend[t] + signal) * sig + surprise
        sigma[t] = sig
        e = min(_GARCH_SHOCK_CAP, abs(surprise) / scale[t])
        h = min(h_high, max(h_low, omega + _GARCH_ALPHA * e * e + _GARCH_BETA * h))
    return _MinutePath(log_close=np.asarray(x), sigma=np.asarray(sigma))


def _simulate_follower(
    rng: np.random.Generator, regimes: _Regimes, leader: _MinutePath
) -> _MinutePath:
    n = len(regimes.state)
    shocks = _student_t(rng, _T_DF, n).tolist()
    jumps = _jumps(rng, n, _FOLLOWER_JUMPS_PER_DAY).tolist()
    scale = (_IDIO_SCALE * _BASE_SIGMA * _VOL_MULT[regimes.state]).tolist()
    omega = 1.0 - _IDIO_ALPHA - _IDIO_BETA
    h_low, h_high = _GARCH_H_BOUNDS
    idio = [0.0] * n
    idio_sigma = [0.0] * n
    h = 1.0
    for t in range(n):
        sig = scale[t] * math.sqrt(h)
        surprise = sig * shocks[t] + jumps[t]
        idio[t] = surprise
        idio_sigma[t] = sig
        e = min(_GARCH_SHOCK_CAP, abs(surprise) / scale[t])
        h = min(h_high, max(h_low, omega + _IDIO_ALPHA * e * e + _IDIO_BETA * h))
    returns = _FOLLOWER_BETA * np.diff(leader.log_close) + np.asarray(idio)
    sigma = np.hypot(_FOLLOWER_BETA * leader.sigma, np.asarray(idio_sigma))
    log_close = np.concatenate(([0.0], np.cumsum(returns)))
    return _MinutePath(log_close=log_close, sigma=sigma)


def _shift_to_start_price(path: _MinutePath, start_price: float) -> _MinutePath:
    return _MinutePath(log_close=path.log_close + math.log(start_price), sigma=path.sigma)


# ----------------------------------------------------------------------------- ticks and quotes


def _simulate_ticks(
    rng: np.random.Generator,
    path: _MinutePath,
    regimes: _Regimes,
    start: pd.Timestamp,
    ticks_per_minute: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(regimes.state)
    counts = 1 + rng.poisson(ticks_per_minute * _ACTIVITY_MULT[regimes.state])
    minute = np.repeat(np.arange(n), counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(len(minute)) - first[minute]  # index of the tick within its minute
    u = _sorted_uniforms_by_group(rng, minute)
    ts_ns = _tick_times(start, minute, position, counts, u)
    prices = _bridge_prices(rng, path, minute, first, counts, u)
    sides = _aggressor_sides(rng, prices, math.exp(path.log_close[0]))
    sizes = _trade_sizes(rng, regimes.state[minute], prices)
    trades = pd.DataFrame(
        {"price": prices, "size": sizes, "side": sides},
        index=_ts_index(ts_ns),
    )
    quotes = _quotes(rng, prices, sides, path.sigma[minute], ts_ns - _QUOTE_LEAD_NS)
    return trades, quotes


def _sorted_uniforms_by_group(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    below_one = np.nextafter(1.0, 0.0)
    key = np.sort(group + np.minimum(rng.random(len(group)), below_one))
    return np.minimum(key - group, below_one)  # exact: integer subtraction within [g, g + 1)


def _tick_times(
    start: pd.Timestamp,
    minute: np.ndarray,
    position: np.ndarray,
    counts: np.ndarray,
    u: np.ndarray,
) -> np.ndarray:
    room = _NS_PER_MINUTE - _MIN_GAP_NS * (counts[minute] + 1)
    offset = _MIN_GAP_NS * (position + 1) + np.floor(u * room).astype(np.int64)
    return start.value + minute.astype(np.int64) * _NS_PER_MINUTE + offset


def _bridge_prices(
    rng: np.random.Generator,
    path: _MinutePath,
    minute: np.ndarray,
    first: np.ndarray,
    counts: np.ndarray,
    u: np.ndarray,
) -> np.ndarray:
    last = first + counts - 1
    du = np.diff(u, prepend=0.0)
    du[first] = u[first]
    walk = np.cumsum(path.sigma[minute] * np.sqrt(du) * rng.standard_normal(len(u)))
    before = np.concatenate(([0.0], walk))[first]  # walk value before each minute's first tick
    w = walk - before[minute]
    frac = u / u[last][minute]
    x_prev = path.log_close[:-1][minute]
    x_close = path.log_close[1:][minute]
    x = x_prev + frac * (x_close - x_prev) + w - frac * w[last][minute]
    x[last] = path.log_close[1:]  # exact close, free of bridge round-off
    return _round_price(np.exp(x))


def _round_price(price: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(price / PRICE_TICK) * PRICE_TICK, PRICE_TICK).round(2)


def _aggressor_sides(
    rng: np.random.Generator, prices: np.ndarray, start_price: float
) -> np.ndarray:
    move = np.sign(np.diff(prices, prepend=_round_price(np.array([start_price]))[0]))
    random_side = np.where(rng.random(len(prices)) < 0.5, 1, -1)
    agree = rng.random(len(prices)) < _SIDE_AGREEMENT
    side = np.where(move == 0, random_side, np.where(agree, move, -move))
    return side.astype(np.int8)


def _trade_sizes(rng: np.random.Generator, state: np.ndarray, prices: np.ndarray) -> np.ndarray:
    notional = (
        _TRADE_NOTIONAL_MEDIAN
        * _SIZE_MULT[state]
        * np.exp(_TRADE_NOTIONAL_SIGMA * rng.standard_normal(len(prices)))
    )
    return np.maximum(np.round(notional / prices, 3), SIZE_STEP)


def _quotes(
    rng: np.random.Generator,
    prices: np.ndarray,
    sides: np.ndarray,
    sigma: np.ndarray,
    ts_ns: np.ndarray,
) -> pd.DataFrame:
    n = len(prices)
    pressure = _SPREAD_TICKS_MEAN * sigma / (_BASE_SIGMA * _VOL_MULT.mean())
    spread_ticks = np.minimum(1 + rng.poisson(pressure), _SPREAD_TICKS_CAP)
    spread = spread_ticks * PRICE_TICK
    buyer = sides > 0
    bid = np.where(buyer, np.round(prices - spread, 2), prices)
    ask = np.where(buyer, prices, np.round(prices + spread, 2))
    bid = np.maximum(bid, PRICE_TICK)
    sizes = []
    for _ in range(2):
        notional = _QUOTE_NOTIONAL_FLOOR + _QUOTE_NOTIONAL_MEDIAN_EXTRA * np.exp(
            _QUOTE_NOTIONAL_SIGMA * rng.standard_normal(n)
        )
        sizes.append(np.round(notional / prices, 3))
    return pd.DataFrame(
        {"bid": bid, "ask": ask, "bid_size": sizes[0], "ask_size": sizes[1]},
        index=_ts_index(ts_ns),
    )


def _ts_index(ts_ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ts_ns.astype("datetime64[ns]"), name="ts").tz_localize("UTC")


# ----------------------------------------------------------------------------- depth


def _simulate_depth(
    rng: np.random.Generator, trades: pd.DataFrame, regimes: _Regimes, start: pd.Timestamp
) -> pd.DataFrame:
    n = len(regimes.state)
    per_minute = _NS_PER_MINUTE // _DEPTH_PERIOD_NS
    ts_ns = start.value + _DEPTH_OFFSET_NS + _DEPTH_PERIOD_NS * np.arange(n * per_minute, dtype=np.int64)
    trade_ns = trades.index.asi8
    last = np.searchsorted(trade_ns, ts_ns, side="right") - 1
    prices = trades["price"].to_numpy()[np.maximum(last, 0)]
    minute = (ts_ns - start.value) // _NS_PER_MINUTE
    thinning = 1.0 / np.sqrt(_VOL_MULT[regimes.state[minute]])
    sides = []
    for _ in range(2):
        notional = _QUOTE_NOTIONAL_FLOOR + _QUOTE_NOTIONAL_MEDIAN_EXTRA * np.exp(
            _QUOTE_NOTIONAL_SIGMA * rng.standard_normal((len(ts_ns), _DEPTH_LEVELS))
        )
        sides.append(np.round(notional.sum(axis=1) * thinning / prices, 3))
    return pd.DataFrame({"bid_depth": sides[0], "ask_depth": sides[1]}, index=_ts_index(ts_ns))


# ----------------------------------------------------------------------------- funding


def _simulate_funding(
    rng: np.random.Generator, log_close: np.ndarray, start: pd.Timestamp
) -> pd.DataFrame:
    n = len(log_close) - 1
    end = start + pd.Timedelta(minutes=n)
    first = (start + pd.Timedelta(nanoseconds=1)).ceil(_FUNDING_PERIOD)
    times = pd.date_range(first, end, freq=_FUNDING_PERIOD, name="ts")
    minutes = ((times.asi8 - start.value) // _NS_PER_MINUTE).astype(np.int64)
    past = log_close[minutes] - log_close[np.maximum(minutes - _MINUTES_PER_8H, 0)]
    noise = rng.standard_normal(len(times)) * _FUNDING_NOISE
    rates = np.empty(len(times))
    rate = _FUNDING_BASE
    for k in range(len(times)):
        rate = (
            _FUNDING_BASE
            + _FUNDING_PERSISTENCE * (rate - _FUNDING_BASE)
            + _FUNDING_TILT * past[k]
            + noise[k]
        )
        rate = min(_FUNDING_CAP, max(-_FUNDING_CAP, rate))
        rates[k] = rate
    index = pd.DatetimeIndex(times.as_unit("ns"), name="ts")
    return pd.DataFrame({"rate": np.round(rates, 8)}, index=index)


# ----------------------------------------------------------------------------- file I/O


_EXPECTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "bars": BAR_COLUMNS,
    "trades": TRADE_COLUMNS,
    "quotes": QUOTE_COLUMNS,
    "funding": FUNDING_COLUMNS,
    "depth": DEPTH_COLUMNS,
}


def _file_stem(symbol: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", symbol)


def _unique_name(name: str, taken: dict[str, Any]) -> str:
    if name in taken:
        raise DataError(f"two symbols map to the same file name {name!r}; rename one of them")
    return name


def _seed_from_sources(market: MarketData) -> int | None:
    for data in market.instruments.values():
        match = re.search(r"\bseed=(\d+)", data.source)
        if match:
            return int(match.group(1))
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_frame(frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    frame.to_parquet(path, engine="pyarrow", index=True)
    return {"rows": len(frame), "sha256": _sha256(path)}


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: market manifest not found")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path}: not an lbml market manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise DataError(
            f"{path}: unsupported manifest version {manifest.get('version')!r} "
            f"(expected {MANIFEST_VERSION})"
        )
    return manifest


def _member(out_dir: Path, name: str) -> Path:
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        raise DataError(f"{out_dir / MANIFEST_NAME}: file {name!r} leaves the market directory")
    return out_dir / name


def _read_frame(path: Path, record: dict[str, Any], kind: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file listed in the manifest is missing")
    if _sha256(path) != record["sha256"]:
        raise DataError(f"{path}: sha256 mismatch, the file is corrupt or was modified")
    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: unreadable parquet ({type(exc).__name__})") from None
    _check_frame(path, frame, kind, int(record["rows"]))
    return frame


def _check_frame(path: Path, frame: pd.DataFrame, kind: str, rows: int) -> None:
    if len(frame) != rows:
        raise DataError(f"{path}: {len(frame)} rows, manifest says {rows}")
    missing = [c for c in _EXPECTED_COLUMNS[kind] if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: {kind} frame lacks columns {missing}")
    index = frame.index
    if (
        not isinstance(index, pd.DatetimeIndex)
        or str(index.tz) != "UTC"
        or index.unit != "ns"
        or index.name != "ts"
    ):
        raise DataError(f"{path}: index must be a UTC nanosecond DatetimeIndex named 'ts'")
