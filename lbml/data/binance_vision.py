"""The data.binance.vision layout: which files (and checksum files) hold a request's data.

Binance publishes its public market data as zip archives, each with a ``.CHECKSUM`` file holding its
SHA-256 (``sha256sum`` format: ``<hex>  <file name>``)::

    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2021-11.zip
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2021-11-27.zip
    data/spot/{monthly,daily}/trades/BTCUSDT/BTCUSDT-trades-2021-11[-27].zip
    data/futures/um/{monthly,daily}/{klines,trades}/...          (USD-M futures, same names)
    data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2021-11.zip

``binance_files`` turns a ``BinanceDataRequest`` into the list of ``RemoteFile``s (one per month or
day of the range); ``lbml.data.download`` fetches them.
"""

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from lbml.errors import ConfigError

Kind = Literal["klines", "trades", "funding"]
Period = Literal["monthly", "daily"]
Market = Literal["spot", "usdt_futures"]

KINDS: tuple[str, ...] = ("klines", "trades", "funding")
PERIODS: tuple[str, ...] = ("monthly", "daily")
MARKETS: tuple[str, ...] = ("spot", "usdt_futures")
INTERVALS: tuple[str, ...] = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
_MARKET_PATH = {"spot": "spot", "usdt_futures": "futures/um"}
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")


@dataclass(frozen=True)
class BinanceDataRequest:
    """One symbol's data of one kind over an inclusive date range; checked on construction."""

    kind: Kind
    symbol: str
    start: dt.date
    end: dt.date
    period: Period = "monthly"
    interval: str = "1m"  # klines only
    market: Market = "spot"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if not _SYMBOL.match(self.symbol):
            raise ConfigError(f"symbol: expected an exchange symbol such as BTCUSDT, got {self.symbol!r}")
        if self.period not in PERIODS:
            raise ConfigError(f"--period: expected monthly or daily, got {self.period!r}")
        if self.market not in MARKETS:
            raise ConfigError(f"--market: expected spot or usdt_futures, got {self.market!r}")
        if self.interval not in INTERVALS:
            raise ConfigError(f"--interval: expected one of {', '.join(INTERVALS)}, got {self.interval!r}")
        if self.end < self.start:
            raise ConfigError(f"--end {self.end} is before --start {self.start}")
        if self.kind == "funding" and (self.market != "usdt_futures" or self.period != "monthly"):
            raise ConfigError("funding: Binance publishes funding rates for --market usdt_futures, "
                              "--period monthly only")


@dataclass(frozen=True)
class RemoteFile:
    """A data file on the site: ``path`` below the base URL; its checksum is ``path + '.CHECKSUM'``."""

    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]

    @property
    def checksum_path(self) -> str:
        return self.path + ".CHECKSUM"

    @property
    def local_path(self) -> str:
        """Where it goes below the output folder: the site's layout without the leading ``data/``."""
        return self.path.removeprefix("data/")


def binance_files(request: BinanceDataRequest) -> list[RemoteFile]:
    """The files that hold ``request``'s data, in date order."""
    r = request
    folder = {"klines": f"klines/{r.symbol}/{r.interval}", "trades": f"trades/{r.symbol}",
              "funding": f"fundingRate/{r.symbol}"}[r.kind]
    stem = {"klines": f"{r.symbol}-{r.interval}", "trades": f"{r.symbol}-trades",
            "funding": f"{r.symbol}-fundingRate"}[r.kind]
    base = f"data/{_MARKET_PATH[r.market]}/{r.period}/{folder}"
    return [RemoteFile(f"{base}/{stem}-{label}.zip") for label in _labels(r.start, r.end, r.period)]


def _labels(start: dt.date, end: dt.date, period: Period) -> list[str]:
    if period == "daily":
        return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    labels, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        labels.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return labels


def parse_date(text: str, flag: str, *, end: bool = False) -> dt.date:
    """``YYYY-MM-DD``, or ``YYYY-MM`` (the month's first day, or with ``end`` its last), as a date;
    ``ConfigError`` naming ``flag`` otherwise."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}", text):
            first = dt.date.fromisoformat(f"{text}-01")
            if not end:
                return first
            return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag}: expected a date YYYY-MM-DD or a month YYYY-MM, got {text!r}") from None
