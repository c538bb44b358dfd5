"""Importers against the real market data in ``shared/data`` and corrupt variants of it."""

from __future__ import annotations

import csv
import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.feather as feather
import pytest

from lbml.data.importers import ImportedFile, infer_symbol, load_file
from lbml.errors import DataError
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA  # the repo's ../shared/data, or SHARED_DATA_DIR
K2021 = "klines_1m/binance_spot_2021-04-02_to_2021-05-14"
K2026 = "klines_1m/binance_spot_2026-03-23_to_2026-04-22"
BYBIT = "klines_1m/bybit_linear_2025-05-30_to_2025-06-29"
ADA = "klines_format_reference/ADABTC-1m-2021-11-28.csv"
ADA_27 = "klines_format_reference/ADABTC-1m-2021-11-27.csv"
MINUTE_MS = 60_000


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip("shared/data is not available")
    return DATA


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --------------------------------------------------------------------------------------------
# Raw readers used as the independent reference (stdlib csv/json, pyarrow)
# --------------------------------------------------------------------------------------------


def raw_csv_rows(path: Path) -> list[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[1:] if not rows[0][0][:1].isdigit() else rows


def raw_rows(path: Path, picks: list[int]) -> list[tuple[pd.Timestamp, list[float]]]:
    """(open time, [o, h, l, c, v]) of the picked rows of a kline/candle file."""
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
        return [
            (pd.Timestamp(int(rows[i][0]), unit="ms", tz="UTC"), [float(x) for x in rows[i][1:6]])
            for i in picks
        ]
    if path.suffix == ".feather":
        table = feather.read_table(path).to_pandas()
        return [(table["date"].iloc[i], table.iloc[i, 1:6].tolist()) for i in picks]
    rows = raw_csv_rows(path)
    out = []
    for i in picks:
        stamp = rows[i][0]
        when = pd.Timestamp(int(stamp), unit="ms") if stamp.isdigit() else pd.Timestamp(stamp)
        when = when.tz_localize("UTC") if when.tz is None else when.tz_convert("UTC")  # naive = UTC
        out.append((when, [float(x) for x in rows[i][1:6]]))
    return out


# --------------------------------------------------------------------------------------------
# Every kline/candle format in shared data
# --------------------------------------------------------------------------------------------

CANDLE_FILES = [
    # path, format, symbol, rows, first close, last close, bar minutes
    (
        f"{K2021}/BTCUSDT-1m.csv.gz",
        "ohlcv_csv",
        "BTCUSDT",
        61272,
        "2021-04-02 00:01",
        "2021-05-14 20:26",
        1,
    ),
    (
        f"{K2021}/ETHUSDT-1m.csv.gz",
        "ohlcv_csv",
        "ETHUSDT",
        61273,
        "2021-04-02 00:01",
        "2021-05-14 20:27",
        1,
    ),
    (
        f"{K2021}/BNBUSDT-1m.csv.gz",
        "ohlcv_csv",
        "BNBUSDT",
        61273,
        "2021-04-02 00:01",
        "2021-05-14 20:27",
        1,
    ),
    (
        f"{K2021}/original/BTC_USDT-1m.json",
        "freqtrade_json",
        "BTCUSDT",
        61272,
        "2021-04-02 00:01",
        "2021-05-14 20:26",
        1,
    ),
    (
        f"{K2021}/original/ETH_USDT-1m.json",
        "freqtrade_json",
        "ETHUSDT",
        61273,
        "2021-04-02 00:01",
        "2021-05-14 20:27",
        1,
    ),
    (
        f"{K2026}/BTCUSDT-1m.csv.gz",
        "ohlcv_csv",
        "BTCUSDT",
        43199,
        "2026-03-23 12:10",
        "2026-04-22 12:08",
        1,
    ),
    (
        f"{K2026}/BNBUSDT-1m.csv.gz",
        "ohlcv_csv",
        "BNBUSDT",
        43199,
        "2026-03-23 12:10",
        "2026-04-22 12:08",
        1,
    ),
    (
        f"{K2026}/original/ETH_USDT-1m.feather",
        "freqtrade_feather",
        "ETHUSDT",
        43199,
        "2026-03-23 12:10",
        "2026-04-22 12:08",
        1,
    ),
    (
        f"{K2026}/original/BTC_USDT-5m.feather",
        "freqtrade_feather",
        "BTCUSDT",
        2751,
        "2026-04-15 00:05",
        "2026-04-24 13:15",
        5,
    ),
    (
        f"{K2026}/original/BTC_USDT-1h.feather",
        "freqtrade_feather",
        "BTCUSDT",
        181,
        "2026-04-17 01:00",
        "2026-04-24 13:00",
        60,
    ),
    (
        f"{BYBIT}/BTCUSDT_1m.csv",
        "ohlcv_csv",
        "BTCUSDT",
        43200,
        "2025-05-30 16:40",
        "2025-06-29 16:39",
        1,
    ),
    (
        f"{BYBIT}/BNBUSDT_1m.csv",
        "ohlcv_csv",
        "BNBUSDT",
        43200,
        "2025-05-30 16:41",
        "2025-06-29 16:40",
        1,
    ),
    (ADA, "binance_klines", "ADABTC", 1440, "2021-11-28 00:01", "2021-11-29 00:00", 1),
    (ADA_27, "binance_klines", "ADABTC", 1440, "2021-11-27 00:01", "2021-11-28 00:00", 1),
    (
        "klines_format_reference/ftx_btc-perp-20211231-20220201_1m.csv",
        "ohlcv_csv",
        "BTC-PERP",
        45031,
        "2021-12-31 23:02",
        "2022-02-01 05:32",
        1,
    ),
    (
        "funding/original/BTC_USDT_USDT-1h-futures.feather",
        "freqtrade_feather",
        "BTCUSDT",
        58623,
        "2019-09-08 18:00",
        "2026-05-17 08:00",
        60,
    ),
]


@pytest.mark.parametrize(("rel", "fmt", "symbol", "rows", "first", "last", "minutes"), CANDLE_FILES)
def test_candle_files_load(
    data: Path, rel: str, fmt: str, symbol: str, rows: int, first: str, last: str, minutes: int
) -> None:
    path = data / rel
    imported = load_file(path)
    frame = imported.frame
    assert isinstance(imported, ImportedFile)
    assert (imported.kind, imported.format, imported.symbol, imported.bar_minutes) == (
        "bars",
        fmt,
        symbol,
        minutes,
    )
    assert imported.path == path
    assert len(frame) == rows
    assert frame.index[0] == ts(first) and frame.index[-1] == ts(last)
    assert frame.index.name == "ts" and str(frame.index.dtype) == "datetime64[ns, UTC]"
    assert list(frame.columns[:5]) == ["open", "high", "low", "close", "volume"]
    assert all(frame[c].dtype == np.float64 for c in frame.columns)
    picks = [0, 1, rows // 2, rows - 1]
    bar = pd.Timedelta(minutes=minutes)
    for i, (opened, values) in zip(picks, raw_rows(path, picks), strict=True):
        assert frame.index[i] == opened + bar
        assert frame.iloc[i, :5].tolist() == values


def test_derived_csv_matches_original_json_and_feather(data: Path) -> None:
    csv_frame = load_file(data / K2021 / "ETHUSDT-1m.csv.gz").frame
    json_frame = load_file(data / K2021 / "original/ETH_USDT-1m.json").frame
    pd.testing.assert_frame_equal(csv_frame, json_frame)
    csv_frame = load_file(data / K2026 / "BTCUSDT-1m.csv.gz").frame
    feather_frame = load_file(data / K2026 / "original/BTC_USDT-1m.feather").frame
    pd.testing.assert_frame_equal(csv_frame, feather_frame)


def test_binance_klines_keep_taker_buy_volume(data: Path) -> None:
    frame = load_file(data / ADA).frame
    raw = raw_csv_rows(data / ADA)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "taker_buy_volume"]
    np.testing.assert_array_equal(frame["taker_buy_volume"].to_numpy(), [float(r[9]) for r in raw])
    np.testing.assert_array_equal(frame["volume"].to_numpy(), [float(r[5]) for r in raw])
    # close time = open_time + 1 minute = close_time column + 1 ms
    np.testing.assert_array_equal(frame.index.asi8 // 1_000_000, [int(r[6]) + 1 for r in raw])
    assert frame.iloc[0].tolist() == [2.820e-05, 2.821e-05, 2.817e-05, 2.818e-05, 85342.7, 36241.7]


KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)


def to_micros(line: str) -> str:
    fields = line.split(",")
    fields[0] = str(int(fields[0]) * 1000)
    fields[6] = str((int(fields[6]) + 1) * 1000 - 1)
    return ",".join(fields)


def test_kline_variants_load_identically(data: Path, tmp_path: Path) -> None:
    original = load_file(data / ADA)
    lines = (data / ADA).read_text().splitlines()
    variants = {
        "header.csv": "\n".join([KLINE_HEADER, *lines]) + "\n",
        "micros.csv": "\n".join(to_micros(line) for line in lines) + "\n",
        "micros_header_crlf.csv": "\r\n".join([KLINE_HEADER, *map(to_micros, lines)]) + "\r\n",
    }
    for name, text in variants.items():
        (tmp_path / f"ADABTC-1m-{name}").write_text(text)
    zipped = tmp_path / "ADABTC-1m-2021-11-28.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(data / ADA, "ADABTC-1m-2021-11-28.csv")
    gzipped = tmp_path / "ADABTC-1m-2021-11-28.csv.gz"
    gzipped.write_bytes(gzip.compress((data / ADA).read_bytes()))
    paths = [tmp_path / f"ADABTC-1m-{name}" for name in variants] + [zipped, gzipped]
    for path in paths:
        imported = load_file(path)
        assert (imported.format, imported.symbol, imported.bar_minutes) == (
            "binance_klines",
            "ADABTC",
            1,
        ), path
        pd.testing.assert_frame_equal(imported.frame, original.frame)


def test_mixed_ms_and_micros_file(data: Path, tmp_path: Path) -> None:
    """Concatenated monthly files from before and after the 2025 switch to microseconds."""
    day27 = (data / ADA_27).read_text().splitlines()
    day28 = (data / ADA).read_text().splitlines()
    path = tmp_path / "ADABTC-1m-mixed.csv"
    path.write_text("\n".join(day27 + [to_micros(line) for line in day28]) + "\n")
    expected = pd.concat([load_file(data / ADA_27).frame, load_file(data / ADA).frame])
    pd.testing.assert_frame_equal(load_file(path).frame, expected)


def test_headerless_simple_ohlcv_and_file_order_kept(data: Path, tmp_path: Path) -> None:
    rows = raw_csv_rows(data / K2026 / "BTCUSDT-1m.csv.gz")[:10]
    shuffled = [rows[i] for i in (0, 1, 2, 5, 3, 4, 6, 7, 8, 9)]
    path = tmp_path / "BTCUSDT_1m.csv"
    path.write_text("".join(",".join(r) + "\n" for r in shuffled))
    imported = load_file(path)
    assert imported.format == "ohlcv_csv" and imported.bar_minutes == 1
    expected = [pd.Timestamp(int(r[0]) + MINUTE_MS, unit="ms", tz="UTC") for r in shuffled]
    assert list(imported.frame.index) == expected  # not sorted


def test_bar_minutes_from_file_name_for_single_row(tmp_path: Path) -> None:
    path = tmp_path / "SOLUSDT-15m.csv"
    path.write_text("open_time,open,high,low,close,volume\n1617321600000,1,2,0.5,1.5,10\n")
    imported = load_file(path)
    assert imported.bar_minutes == 15
    assert imported.frame.index[0] == ts("2021-04-02 00:15")
    assert load_file(path, bar_minutes=30).frame.index[0] == ts("2021-04-02 00:30")


# --------------------------------------------------------------------------------------------
# Trades, quotes, funding
# --------------------------------------------------------------------------------------------

SPOT_TRADES = [  # id, price, qty, quote_qty, time, is_buyer_maker, is_best_match
    "553287559,39432.48,0.000263,10.37074224,1610064000278,True,True",
    "553287560,39439.44,0.004376,172.58698944,1610064000310,False,True",
    "553287561,39439.22,0.000311,12.26559742,1610064000368,False,True",
]
FUTURES_TRADES = "id,price,qty,quote_qty,time,is_buyer_maker\n" + "\n".join(
    ",".join(line.split(",")[:6]).replace("True", "true").replace("False", "false")
    for line in SPOT_TRADES
)
SPOT_AGGTRADES = [  # agg id, price, qty, first/last trade id, time (µs), buyer_maker, best_match
    "3374516482,93425.01,0.00011,4336521232,4336521232,1735689600012345,False,True",
    "3374516483,93425.00,0.05000,4336521233,4336521235,1735689600013000,True,True",
    "3374516484,93425.01,0.20000,4336521236,4336521236,1735689600013000,False,True",
]
FUTURES_AGGTRADES = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
    + ("\n".join(",".join(line.split(",")[:7]).lower() for line in SPOT_AGGTRADES))
)


@pytest.mark.parametrize(
    ("name", "text", "fmt", "first_ts"),
    [
        (
            "BTCUSDT-trades-2021-01-08.csv",
            "\n".join(SPOT_TRADES) + "\n",
            "binance_trades",
            "2021-01-08 00:00:00.278",
        ),
        (
            "BTCUSDT-trades-2021-01-08-h.csv",
            FUTURES_TRADES + "\n",
            "binance_trades",
            "2021-01-08 00:00:00.278",
        ),
        (
            "BTCUSDT-aggTrades-2025-01-01.csv",
            "\n".join(SPOT_AGGTRADES),
            "binance_aggtrades",
            "2025-01-01 00:00:00.012345",
        ),
        (
            "BTCUSDT-aggTrades-2025-01-01-h.csv",
            FUTURES_AGGTRADES + "\n",
            "binance_aggtrades",
            "2025-01-01 00:00:00.012345",
        ),
    ],
)
def test_binance_trades_side_mapping(
    tmp_path: Path, name: str, text: str, fmt: str, first_ts: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    imported = load_file(path)
    frame = imported.frame
    assert (imported.kind, imported.format, imported.symbol, imported.bar_minutes) == (
        "trades",
        fmt,
        "BTCUSDT",
        None,
    )
    assert list(frame.columns) == ["price", "size", "side"]
    assert frame["side"].dtype == np.int8 and frame["price"].dtype == np.float64
    # is_buyer_maker true -> the seller hit the bid -> side -1
    assert frame["side"].tolist() == ([-1, 1, 1] if fmt == "binance_trades" else [1, -1, 1])
    assert frame.index[0] == ts(first_ts)
    assert frame["size"].iloc[0] == (0.000263 if fmt == "binance_trades" else 0.00011)


def test_trades_zip_like_data_binance_vision(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2021-01-08.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-trades-2021-01-08.csv", "\n".join(SPOT_TRADES) + "\n")
    imported = load_file(path)
    assert imported.format == "binance_trades" and len(imported.frame) == 3


def test_tardis_trades_and_quotes(data: Path) -> None:
    trades_path = data / "trades/tardis_binance-futures_BTCUSDT_trades_2020-02-22.csv"
    trades = load_file(trades_path)
    raw = pd.read_csv(trades_path)
    assert (trades.kind, trades.format, trades.symbol, len(trades.frame)) == (
        "trades",
        "tardis_trades",
        "BTCUSDT",
        9999,
    )
    np.testing.assert_array_equal(trades.frame["side"], np.where(raw["side"] == "buy", 1, -1))
    np.testing.assert_array_equal(trades.frame["size"], raw["amount"])
    assert trades.frame.index[0] == ts("2020-02-22 00:00:02.111")
    quotes_path = data / "trades/tardis_binance-futures_BTCUSDT_quotes_2020-02-22.csv"
    quotes = load_file(quotes_path)
    assert (quotes.kind, quotes.format, len(quotes.frame)) == ("quotes", "tardis_quotes", 9999)
    assert list(quotes.frame.columns) == ["bid", "ask", "bid_size", "ask_size"]
    assert quotes.frame.iloc[0].tolist() == [9681.92, 9682.0, 0.67, 0.84]
    assert quotes.frame.index[0] == ts("2020-02-22 00:00:01.096")


def test_parquet_trades_and_quotes(data: Path) -> None:
    path = data / "trades/nautilus_binance_spot_BTCUSDT_trades_2021-01-08.parquet"
    trades = load_file(path)
    raw = pd.read_parquet(path)
    assert (trades.kind, trades.symbol, len(trades.frame)) == ("trades", "BTCUSDT", 2001)
    np.testing.assert_array_equal(
        trades.frame["side"], np.where(raw["buyer_maker"] == "True", -1, 1)
    )
    assert int((trades.frame["side"] == -1).sum()) == 914
    assert trades.frame.index[0] == ts("2021-01-08 00:00:00.278")
    quotes = load_file(data / "trades/nautilus_binance_spot_BTCUSDT_quotes_2021-01-08.parquet")
    assert (quotes.kind, len(quotes.frame)) == ("quotes", 451)
    assert quotes.frame.index[-1] == ts("2021-01-08 00:00:46.674")


def test_ccxt_public_trades(data: Path) -> None:
    imported = load_file(data / "trades/freqtrade_orderflow_public_trades_list.csv")
    assert (imported.kind, imported.format, len(imported.frame)) == ("trades", "ccxt_trades", 1000)
    assert imported.frame["side"].tolist()[:2] == [1, -1]
    assert imported.frame["price"].iloc[0] == 1666.8


def test_funding_csv_and_feather_agree(data: Path) -> None:
    from_csv = load_file(data / "funding/BTCUSDT_funding_rate_8h.csv.gz")
    from_feather = load_file(data / "funding/original/BTC_USDT_USDT-1h-funding_rate.feather")
    assert (from_csv.kind, from_csv.format, from_csv.symbol) == (
        "funding",
        "funding_csv",
        "BTCUSDT",
    )
    assert (from_feather.kind, from_feather.format) == ("funding", "freqtrade_funding")
    assert len(from_csv.frame) == 7323 and list(from_csv.frame.columns) == ["rate"]
    assert from_csv.frame.index[0] == ts("2019-09-10 08:00") and from_csv.frame.index[-1] == ts(
        "2026-05-17"
    )
    assert from_csv.frame["rate"].iloc[0] == 0.0001
    pd.testing.assert_frame_equal(from_csv.frame, from_feather.frame)


def test_data_binance_vision_funding_csv(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-fundingRate-2024-01.csv"
    path.write_text(
        "calc_time,funding_interval_hours,last_funding_rate\n"
        "1704067200000,8,0.00037409\n1704096000000,8,0.00030012\n"
    )
    imported = load_file(path)
    assert (imported.kind, imported.format, imported.symbol) == (
        "funding",
        "funding_csv",
        "BTCUSDT",
    )
    assert imported.frame["rate"].tolist() == [0.00037409, 0.00030012]
    assert imported.frame.index[1] == ts("2024-01-01 08:00")


def test_kind_argument(data: Path, tmp_path: Path) -> None:
    assert load_file(data / ADA, kind="bars").kind == "bars"
    with pytest.raises(DataError, match=r"expected trades data but the file holds bars"):
        load_file(data / ADA, kind="trades")
    renamed = tmp_path / "BTC_USDT_USDT-8h-rates.feather"  # no "funding_rate" in the name
    renamed.write_bytes(
        (data / "funding/original/BTC_USDT_USDT-1h-funding_rate.feather").read_bytes()
    )
    assert load_file(renamed).kind == "bars"
    funding = load_file(renamed, kind="funding")  # freqtrade candle layout, rate in "open"
    expected = load_file(data / "funding/BTCUSDT_funding_rate_8h.csv.gz").frame
    pd.testing.assert_frame_equal(funding.frame, expected)
    assert load_file(data / ADA, symbol="ADA/BTC").symbol == "ADA/BTC"


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("BTCUSDT-1m-2021-04.csv", "BTCUSDT"),
        ("BTC_USDT-1m.json", "BTCUSDT"),
        ("BTCUSDT_1m.csv", "BTCUSDT"),
        ("BNBUSDT-1m.csv.gz", "BNBUSDT"),
        ("BTC_USDT_USDT-1h-funding_rate.feather", "BTCUSDT"),
        ("ETHUSDT-aggTrades-2025-01-01.zip", "ETHUSDT"),
        ("ADABTC-1m-2021-11-28.csv", "ADABTC"),
        ("tardis_binance-futures_BTCUSDT_trades_2020-02-22.csv", "BTCUSDT"),
        ("btcusdt_20240808.gz", "BTCUSDT"),
        ("ftx_btc-perp-20211231-20220201_1m.csv", "BTC-PERP"),
        ("freqtrade_orderflow_public_trades_list.csv", None),
        ("history.csv", None),
    ],
)
def test_infer_symbol(name: str, symbol: str | None) -> None:
    assert infer_symbol(name) == symbol


# --------------------------------------------------------------------------------------------
# Malformed input: DataError with one line naming the file (and the line)
# --------------------------------------------------------------------------------------------


def load_error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def corrupt(lines: list[str], row: int, column: int, value: str) -> list[str]:
    out = list(lines)
    fields = out[row].split(",")
    fields[column] = value
    out[row] = ",".join(fields)
    return out


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_value_reports_line_and_column(data: Path, tmp_path: Path) -> None:
    lines = (data / ADA).read_text().splitlines()
    path = write(tmp_path / "ADABTC-1m.csv", corrupt(lines, 16, 2, "abc"))
    assert load_error(path) == "line 17: column 'high' is not a number ('abc')"
    path = write(tmp_path / "ADABTC-1m-h.csv", [KLINE_HEADER, *corrupt(lines, 700, 5, "1.2.3")])
    assert load_error(path) == "line 702: column 'volume' is not a number ('1.2.3')"
    path = write(tmp_path / "ADABTC-1m-empty.csv", corrupt(lines, 99, 3, ""))
    assert load_error(path) == "line 100: column 'low' is empty"
    blank = list(lines)
    blank.insert(3, "")  # pandas skips blank lines; the line number must still be right
    path = write(tmp_path / "ADABTC-1m-blank.csv", corrupt(blank, 20, 4, "x"))
    assert load_error(path) == "line 21: column 'close' is not a number ('x')"
    path = write(tmp_path / "ADABTC-1m-ts.csv", corrupt(lines, 9, 0, "2021-11-28"))
    assert load_error(path).startswith("line 10: column 'open_time' is not")


def test_gzipped_bad_value(data: Path, tmp_path: Path) -> None:
    rows = gzip.decompress((data / K2021 / "BTCUSDT-1m.csv.gz").read_bytes()).decode().splitlines()
    path = tmp_path / "BTCUSDT-1m.csv.gz"
    path.write_bytes(
        gzip.compress(("\n".join(corrupt(rows, 30000, 4, "n/a")) + "\n").encode(), compresslevel=1)
    )
    assert load_error(path) == "line 30001: column 'close' is not a number ('n/a')"


def test_wrong_column_count(data: Path, tmp_path: Path) -> None:
    lines = (data / ADA).read_text().splitlines()
    short = list(lines)
    short[2] = ",".join(short[2].split(",")[:7])
    assert (
        load_error(write(tmp_path / "short.csv", short)) == "expected 12 columns, found 7 on line 3"
    )
    long = list(lines)
    long[500] += ",0"
    assert (
        load_error(write(tmp_path / "long.csv", long))
        == "expected 12 columns, found 13 on line 501"
    )


def test_bybit_bad_iso_timestamp(data: Path, tmp_path: Path) -> None:
    lines = (data / BYBIT / "BTCUSDT_1m.csv").read_text().splitlines()[:50]
    path = write(tmp_path / "BTCUSDT_1m.csv", corrupt(lines, 10, 0, "2025-13-40 16:49:00+00:00"))
    assert (
        load_error(path)
        == "line 11: column 'timestamp' is not a valid timestamp ('2025-13-40 16:49:00+00:00')"
    )


def test_bad_trade_flag(tmp_path: Path) -> None:
    path = write(tmp_path / "BTCUSDT-trades.csv", corrupt(SPOT_TRADES, 2, 5, "maybe"))
    assert load_error(path) == "line 3: column 'is_buyer_maker' is not true/false ('maybe')"


def test_structural_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert load_error(empty) == "file is empty"
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    assert load_error(blank) == "file is empty"
    header_only = write(tmp_path / "header_only.csv", [KLINE_HEADER])
    assert load_error(header_only) == "file has a header but no data rows"
    assert load_error(tmp_path / "missing.csv") == "file not found"
    prose = write(tmp_path / "notes.csv", ["hello world, this is not market data"])
    assert (
        load_error(prose)
        == "unrecognised format (first line: hello world, this is not market data)"
    )
    numbers = write(tmp_path / "numbers.csv", ["1,2,3"])
    assert load_error(numbers) == "unrecognised format (first line: 1,2,3)"
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", "1")
        archive.writestr("b.csv", "2")
    assert load_error(two) == "zip archive holds 2 files; expected exactly one CSV"
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(gzip.compress(b"1,2,3\n" * 1000)[:40])
    assert load_error(truncated).startswith("corrupt or unreadable gzip")


def test_bad_json(tmp_path: Path) -> None:
    ragged = tmp_path / "BTC_USDT-1m.json"
    ragged.write_text("[[1617321600000,1,2,0.5,1.5,10],[1617321660000,1,2,0.5]]")
    assert load_error(ragged) == "row 2: expected 6 values, found 4"
    text = tmp_path / "ETH_USDT-1m.json"
    text.write_text('[[1617321600000,1,2,0.5,1.5,10],[1617321660000,1,2,"x",1,1]]')
    assert load_error(text) == "row 2: column 'low' is not a number ('x')"
    broken = tmp_path / "BNB_USDT-1m.json"
    broken.write_text("[[1617321600000,1,2,0.5,1.5,10],")
    assert load_error(broken).startswith("not valid JSON")


def test_unsupported_order_book_files_are_rejected_not_misread(data: Path) -> None:
    # Bybit orderbook.500 JSON lines are not read (tests/test_orderbook.py covers the supported ones).
    message = load_error(data / "orderbook/bybit_xrpusdt-ob500_2024-12-01.data.zip")
    assert "unrecognised format" in message
