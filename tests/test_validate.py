"""Validation of real shared data (known gaps, zero volume) and of corrupted variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.data.importers import load_file
from lbml.data.validate import FATAL, WARNING, ValidationReport, find_gaps, format_reports, validate
from lbml.errors import DataError
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA  # the repo's ../shared/data, or SHARED_DATA_DIR
K2021 = "klines_1m/binance_spot_2021-04-02_to_2021-05-14"
K2026 = "klines_1m/binance_spot_2026-03-23_to_2026-04-22"
BYBIT = "klines_1m/bybit_linear_2025-05-30_to_2025-06-29"
ADA = "klines_format_reference/ADABTC-1m-2021-11-28.csv"


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip("shared/data is not available")
    return DATA


@pytest.fixture(scope="module")
def ada_lines(data: Path) -> list[str]:
    return (data / ADA).read_text().splitlines()


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def set_field(lines: list[str], row: int, column: int, value: str) -> list[str]:
    out = list(lines)
    fields = out[row].split(",")
    fields[column] = value
    out[row] = ",".join(fields)
    return out


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["BTCUSDT-1m.csv.gz", "ETHUSDT-1m.csv.gz", "BNBUSDT-1m.csv.gz"])
def test_2021_set_has_its_two_known_gaps(data: Path, name: str) -> None:
    imported = load_file(data / K2021 / name)
    report = validate(imported)
    assert report.ok and not report.fatal
    assert [f.check for f in report.warnings] == ["gaps"]
    gap = report.finding("gaps")
    assert gap is not None and gap.severity == WARNING and gap.count == 434
    assert gap.first_ts == ts(
        "2021-04-20 02:01"
    )  # close time of the first missing bar (opens 02:00)
    assert "2 gaps" in gap.detail and "largest: 284 bars" in gap.detail
    gaps = find_gaps(imported.frame.index, 1)
    assert gaps["missing"].tolist() == [150, 284]
    assert gaps["before"].tolist() == [ts("2021-04-20 02:00"), ts("2021-04-25 04:01")]
    assert gaps["after"].tolist() == [ts("2021-04-20 04:31"), ts("2021-04-25 08:46")]
    report.raise_if_fatal()  # warnings only: must not raise


@pytest.mark.parametrize("name", ["BTCUSDT-1m.csv.gz", "ETHUSDT-1m.csv.gz", "BNBUSDT-1m.csv.gz"])
def test_2026_set_is_clean(data: Path, name: str) -> None:
    report = validate(load_file(data / K2026 / name))
    assert report.findings == ()
    assert (report.rows, report.bar_minutes) == (43199, 1)
    assert (report.start, report.end) == (ts("2026-03-23 12:10"), ts("2026-04-22 12:08"))
    assert "no problems found" in report.to_table()


def test_bybit_bnb_zero_volume_bars(data: Path) -> None:
    report = validate(load_file(data / BYBIT / "BNBUSDT_1m.csv"))
    assert report.ok
    zero = report.finding("zero_volume")
    assert zero is not None and (zero.severity, zero.count) == (WARNING, 599)
    assert report.finding("gaps") is None
    assert validate(load_file(data / BYBIT / "BTCUSDT_1m.csv")).findings == ()


def test_real_ticks_and_funding_are_clean(data: Path) -> None:
    for rel in (
        "trades/tardis_binance-futures_BTCUSDT_trades_2020-02-22.csv",
        "trades/tardis_binance-futures_BTCUSDT_quotes_2020-02-22.csv",
        "trades/nautilus_binance_spot_BTCUSDT_trades_2021-01-08.parquet",
        "funding/BTCUSDT_funding_rate_8h.csv.gz",
    ):
        report = validate(load_file(data / rel))
        assert report.findings == (), rel


# --------------------------------------------------------------------------------------------
# Corrupted bars: each problem is a fatal finding with a one-line DataError
# --------------------------------------------------------------------------------------------


def fatal_message(path: Path) -> tuple[ValidationReport, str]:
    report = validate(load_file(path))
    assert not report.ok
    with pytest.raises(DataError) as info:
        report.raise_if_fatal()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return report, message[len(f"{path}: ") :]


def test_duplicate_timestamps(ada_lines: list[str], tmp_path: Path) -> None:
    lines = (
        ada_lines[:5] + ada_lines[4:5] * 3 + ada_lines[5:]
    )  # bar opening 00:04 repeated 3 more times
    report, message = fatal_message(write(tmp_path / "dups.csv", lines))
    assert message.startswith("3 duplicate timestamps (first at 2021-11-28 00:05:00+00:00, row 6)")
    dup = report.finding("duplicates")
    assert dup is not None and (dup.severity, dup.count, dup.first_row) == (FATAL, 3, 5)
    assert report.finding("unsorted") is None


def test_unsorted(ada_lines: list[str], tmp_path: Path) -> None:
    lines = list(ada_lines)
    lines[100], lines[101] = lines[101], lines[100]
    report, message = fatal_message(write(tmp_path / "unsorted.csv", lines))
    assert (
        message
        == "1 timestamp earlier than the row before (first at 2021-11-28 01:41:00+00:00, row 102)"
    )
    assert report.finding("gaps") is None  # gaps are measured on the sorted timestamps


def test_high_below_low(ada_lines: list[str], tmp_path: Path) -> None:
    lines = set_field(ada_lines, 10, 2, "0.00002000")
    report, message = fatal_message(write(tmp_path / "high_low.csv", lines))
    assert message.startswith("1 bar with high < low (first at 2021-11-28 00:11:00+00:00, row 11)")
    assert [f.check for f in report.fatal] == ["high_low"]  # not double-counted as an OHLC problem


def test_negative_price(ada_lines: list[str], tmp_path: Path) -> None:
    lines = set_field(ada_lines, 20, 3, "-0.00002817")
    report, message = fatal_message(write(tmp_path / "negative.csv", lines))
    assert message.startswith(
        "1 bar with a price <= 0 (first at 2021-11-28 00:21:00+00:00, row 21)"
    )
    assert report.finding("price") is not None


def test_close_outside_range(ada_lines: list[str], tmp_path: Path) -> None:
    lines = set_field(ada_lines, 30, 4, "0.00003000")
    _, message = fatal_message(write(tmp_path / "ohlc.csv", lines))
    expected = "1 bar with open or close outside [low, high] (first at 2021-11-28 00:31:00+00:00"
    assert message == f"{expected}, row 31)"


def test_nan_and_inf(ada_lines: list[str], tmp_path: Path) -> None:
    lines = set_field(set_field(ada_lines, 40, 4, "NaN"), 50, 5, "inf")
    report, message = fatal_message(write(tmp_path / "nan.csv", lines))
    assert message.startswith(
        "2 bars with NaN or infinite values (close, volume) (first at 2021-11-28 00:41:00"
    )
    assert report.finding("nan") is not None and report.finding("nan").count == 2


def test_several_fatal_problems_in_one_line(ada_lines: list[str], tmp_path: Path) -> None:
    lines = set_field(set_field(ada_lines, 10, 2, "0.00002000"), 20, 3, "-1")
    report, message = fatal_message(write(tmp_path / "many.csv", lines))
    assert message.endswith("(+1 more fatal problem)")
    assert [f.check for f in report.fatal] == ["price", "high_low"]


def test_gap_and_zero_volume_warnings_on_a_frame(data: Path) -> None:
    frame = load_file(data / K2026 / "BTCUSDT-1m.csv.gz").frame.iloc[:1000].copy()
    frame = frame.drop(frame.index[100:110])
    frame.iloc[5, frame.columns.get_loc("volume")] = 0.0
    report = validate(frame)  # a plain frame: kind and bar length are inferred
    assert (report.kind, report.bar_minutes, report.source) == ("bars", 1, "<frame>")
    assert report.ok
    assert [(f.check, f.count) for f in report.warnings] == [("gaps", 10), ("zero_volume", 1)]
    table = report.to_table()
    assert "gaps" in table and "zero_volume" in table and "10 missing bars in 1 gap" in table


def test_off_grid_timestamps() -> None:
    index = pd.DatetimeIndex(
        [
            ts("2024-01-01 00:01"),
            ts("2024-01-01 00:02"),
            ts("2024-01-01 00:02:30"),
            ts("2024-01-01 00:04"),
        ],
        name="ts",
    )
    frame = pd.DataFrame(
        dict.fromkeys(("open", "high", "low", "close", "volume"), 1.0), index=index
    )
    report = validate(frame, bar_minutes=1)
    off = report.finding("off_grid")
    assert off is not None and (off.count, off.first_row) == (1, 2)


# --------------------------------------------------------------------------------------------
# Trades, quotes, funding
# --------------------------------------------------------------------------------------------


def make_trades(
    price: list[float], size: list[float], side: list[int], ms: list[int]
) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True), name="ts")
    return pd.DataFrame(
        {"price": np.array(price), "size": np.array(size), "side": np.array(side, dtype=np.int8)},
        index=index,
    )


def test_trade_checks() -> None:
    good = make_trades(
        [100, 101, 101], [1, 2, 3], [1, -1, 1], [0, 5, 5]
    )  # equal timestamps are fine
    assert validate(good).findings == ()
    bad = make_trades([100, -1, 101, np.nan], [1, 2, 0, 1], [1, 0, 1, -1], [0, 10, 5, 20])
    report = validate(bad)
    assert report.kind == "trades"
    assert {f.check: f.count for f in report.fatal} == {
        "nan": 1,
        "unsorted": 1,
        "price": 1,
        "size": 1,
        "side": 1,
    }
    with pytest.raises(
        DataError, match=r"^trades\.csv: 1 trade with NaN or infinite values \(price\)"
    ):
        report.raise_if_fatal("trades.csv")


def test_trades_from_file_out_of_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "BTCUSDT-trades.csv",
        ["1,100.0,0.1,10.0,1610064000310,True,True", "2,100.5,0.2,20.1,1610064000278,False,True"],
    )
    report = validate(load_file(path))
    assert [f.check for f in report.fatal] == ["unsorted"]


def test_quote_checks() -> None:
    index = pd.DatetimeIndex(pd.to_datetime([0, 1, 2], unit="s", utc=True), name="ts")
    quotes = pd.DataFrame(
        {
            "bid": [10.0, 10.2, 0.0],
            "ask": [10.1, 10.1, 10.1],
            "bid_size": [1.0, 1.0, 1.0],
            "ask_size": [1.0, -1, 1],
        },
        index=index,
    )
    report = validate(quotes)
    assert [(f.check, f.severity) for f in report.findings] == [
        ("price", FATAL),
        ("size", FATAL),
        ("crossed", WARNING),
    ]


def test_funding_duplicates(data: Path) -> None:
    frame = load_file(data / "funding/ETHUSDT_funding_rate_8h.csv.gz").frame
    doubled = pd.concat([frame.iloc[:10], frame.iloc[9:10], frame.iloc[10:20]])
    report = validate(doubled)
    assert report.kind == "funding"
    assert [f.check for f in report.fatal] == ["duplicates"]


def test_unknown_frame_and_table_rendering(data: Path) -> None:
    with pytest.raises(DataError, match="cannot tell the kind of data"):
        validate(pd.DataFrame({"x": [1.0]}, index=pd.DatetimeIndex([ts("2024-01-01")])))
    reports = [
        validate(load_file(data / K2021 / "BTCUSDT-1m.csv.gz")),
        validate(load_file(data / K2026 / "BTCUSDT-1m.csv.gz")),
    ]
    text = format_reports(reports)
    assert text.count("BTCUSDT-1m.csv.gz") == 2
    first = reports[0].to_table().splitlines()
    assert first[0].endswith("OK (1 warning)") and "61,272 rows" in first[0]
    assert first[1].split() == ["severity", "check", "count", "first", "at", "row", "detail"]
    assert first[2].split()[:3] == ["warning", "gaps", "434"]
