"""Order-book importers (Tardis snapshots, Binance depth CSV, Binance websocket capture) on the real
files in ``shared/data/orderbook``, their refusals, and depth features computed from real books."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.data.frames import bars_from_trades
from lbml.data.importers import load_file
from lbml.data.importers import load_depth
from lbml.data.validate import validate
from lbml.errors import DataError
from lbml.features.check import FeatureInputs, check_features
from lbml.features.pipeline import FeaturePipeline, compute_features
from lbml.scenario import DataConfig
from plugins.data_sources import FilesSource
from plugins.features_microstructure import DepthFeatures

from .conftest import shared_file

TARDIS_5 = ("orderbook", "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv")
TARDIS_25 = ("orderbook", "tardis_binance-futures_book_snapshot_25_BTCUSDT.csv")
SNAP = ("orderbook", "nautilus_binance_futures_BTCUSDT_depth_snap.csv")
UPDATE = ("orderbook", "nautilus_binance_futures_BTCUSDT_depth_update.csv")
CAPTURE = ("orderbook", "hftbacktest_binance_spot", "btcusdt_20240808.gz")


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_file(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def us(value: int) -> pd.Timestamp:
    return pd.Timestamp(value * 1000, tz="UTC")


# --------------------------------------------------------------------------------------------
# Tardis book_snapshot_N
# --------------------------------------------------------------------------------------------


def test_tardis_snapshot_5_first_row_by_hand() -> None:
    imported = load_file(shared_file(*TARDIS_5))
    assert (imported.kind, imported.format, imported.symbol) == ("depth", "tardis_book_snapshot", "BTCUSDT")
    depth, quotes = imported.frame, imported.streams["quotes"]
    assert len(depth) == len(quotes) == 10
    # Row 1: bids amounts 10.896 + 0.2 + 0.2 + 0.98 + 0.111, asks 1.714 + 5.4 + 0.238 + 0.077 + 0.918,
    # indexed by local_timestamp 1598918403810979 (received), not timestamp 1598918403696000.
    assert depth.index[0] == us(1598918403810979)
    assert depth["bid_depth"].iloc[0] == pytest.approx(12.387, abs=1e-12)
    assert depth["ask_depth"].iloc[0] == pytest.approx(8.347, abs=1e-12)
    assert quotes.iloc[0].tolist() == [11657.07, 11657.08, 10.896, 1.714]
    # Row 2: only asks[0].amount changed (1.714 -> 1.476).
    assert depth["ask_depth"].iloc[1] == pytest.approx(8.347 - 1.714 + 1.476, abs=1e-12)
    assert validate(imported).ok


@pytest.mark.parametrize("parts", [TARDIS_5, TARDIS_25])
def test_tardis_snapshots_match_the_raw_text_on_every_row(parts: tuple[str, ...]) -> None:
    path = shared_file(*parts)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    depth = load_file(path).frame
    assert len(depth) == len(rows)
    for row, (ts, got) in zip(rows, depth.iterrows(), strict=True):
        assert ts == us(int(row["local_timestamp"]))
        for side in ("bids", "asks"):
            expected = sum(float(row[f"{side}[{i}].amount"]) for i in range(5))
            assert got[f"{side[:3]}_depth"] == pytest.approx(expected, rel=1e-12)


def test_tardis_25_uses_only_the_best_five_levels() -> None:
    five, twenty_five = load_file(shared_file(*TARDIS_5)).frame, load_file(shared_file(*TARDIS_25)).frame
    shared = five.index.intersection(twenty_five.index)
    assert len(shared) >= 4
    pd.testing.assert_frame_equal(five.loc[shared], twenty_five.loc[shared])


def _tardis_variant(tmp_path: Path, row: int, column: str, value: str) -> Path:
    src = shared_file(*TARDIS_5)
    with src.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows[row][rows[0].index(column)] = value
    out = tmp_path / "binance-futures_book_snapshot_5_BTCUSDT.csv"
    with out.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return out


def test_tardis_malformed_rows_are_refused_with_their_line(tmp_path: Path) -> None:
    bad = _tardis_variant(tmp_path, 3, "bids[2].amount", "abc")
    assert error_of(bad) == "line 4: column 'bids[2]_amount' is not a number ('abc')"
    negative = _tardis_variant(tmp_path, 2, "asks[1].amount", "-0.5")
    assert error_of(negative) == "line 3: column 'asks[1].amount' is negative (-0.5)"
    crossed = _tardis_variant(tmp_path, 5, "bids[0].price", "11700")
    assert error_of(crossed) == "line 6: crossed book (bids[0].price 11700 >= asks[0].price 11657.08)"
    crossed = _tardis_variant(tmp_path, 5, "asks[0].price", "11657.00")
    assert error_of(crossed) == "line 6: crossed book (bids[0].price 11657.07 >= asks[0].price 11657)"
    half = _tardis_variant(tmp_path, 7, "asks[4].amount", "")
    assert error_of(half) == "line 8: level asks[4] has a price or an amount but not both"
    unordered = _tardis_variant(tmp_path, 9, "asks[3].price", "11657.50")
    assert error_of(unordered) == "line 10: asks[3].price is not above asks[2].price"


# --------------------------------------------------------------------------------------------
# Binance depth CSV (nautilus test data) and hand-made chained files
# --------------------------------------------------------------------------------------------


def test_binance_depth_snapshot_is_summarised() -> None:
    path = shared_file(*SNAP)
    imported = load_file(path)
    assert (imported.kind, imported.format, imported.symbol) == ("depth", "binance_depth_csv", "BTCUSDT")
    with path.open(newline="") as fh:
        bids = sorted(((float(r["price"]), float(r["qty"])) for r in csv.DictReader(fh)), reverse=True)
    # Best five bids: 20377.0 x 1.770, 20376.9 x 0.001, 20376.8 x 0.009, 20376.7 x 1.216, then the 5th.
    assert bids[:4] == [(20377.0, 1.77), (20376.9, 0.001), (20376.8, 0.009), (20376.7, 1.216)]
    depth = imported.frame
    assert depth.index.tolist() == [pd.Timestamp(1667346579146, unit="ms", tz="UTC")]
    assert depth["bid_depth"].iloc[0] == pytest.approx(sum(q for _, q in bids[:5]), abs=1e-12)
    assert depth["ask_depth"].iloc[0] == 0.0  # the sample snapshot holds bids only
    assert len(imported.streams["quotes"]) == 0  # no two-sided top of book
    report = validate(imported)
    assert report.ok and report.finding("one_sided") is not None


def test_binance_depth_files_that_do_not_chain_are_refused() -> None:
    snap, update = shared_file(*SNAP), shared_file(*UPDATE)
    with pytest.raises(DataError) as info:
        load_depth([snap, update])
    assert str(info.value) == (
        f"{update}: line 2: first update after the snapshot starts at id 2098041693435, after the "
        "snapshot's 2098021528332: updates are missing (the files do not chain)"
    )
    assert error_of(update).startswith("order-book updates without a snapshot")


HEADER = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n"


def _depth_csv(tmp_path: Path, name: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _snapshot_rows() -> list[str]:
    bids = [f"ETHUSDT,1700000000000,100,100,b,snap,{1000 - i}.00,{i + 1}.000,-1" for i in range(7)]
    asks = [f"ETHUSDT,1700000000000,100,100,a,snap,{1001 + i}.00,{(i + 1) / 10:.3f},-1" for i in range(7)]
    return bids + asks


def test_binance_depth_updates_replay_across_files(tmp_path: Path) -> None:
    snap = _depth_csv(tmp_path, "ETHUSDT_depth_snap.csv", _snapshot_rows())
    update = _depth_csv(
        tmp_path,
        "ETHUSDT_depth_update.csv",
        [
            "ETHUSDT,1699999999000,90,95,b,set,999.00,50.000,89",  # before the snapshot: dropped
            "ETHUSDT,1700000001000,98,103,b,set,1000.00,0.000,97",  # straddles id 100: best bid deleted
            "ETHUSDT,1700000001000,98,103,a,set,1000.50,4.000,97",  # new best ask
            "ETHUSDT,1700000002000,104,110,b,set,994.50,9.000,103",  # 7th level: not in the top 5
            "ETHUSDT,1700000003000,111,112,a,set,1001.00,0.000,110",
        ],
    )
    depth = load_depth([update, snap])[0]  # order of the paths does not matter
    assert depth.format == "binance_depth_csv" and depth.symbol == "ETHUSDT"
    ms = [pd.Timestamp(t, unit="ms", tz="UTC") for t in (1700000000000, 1700000001000, 1700000002000, 1700000003000)]
    assert depth.frame.index.tolist() == ms
    # Snapshot: bids 1+2+3+4+5, asks .1+.2+.3+.4+.5. Then 1000 deleted: bids 2..6; ask 4 @ 1000.5 added.
    # Then 994.5 is below the five best bids (999..996): unchanged. Then the 1001 ask (0.1) is deleted.
    after_delete = (20.0, 4.0 + 0.1 + 0.2 + 0.3 + 0.4)
    expected = [(15.0, 1.5), after_delete, after_delete, (20.0, 4.0 + 0.2 + 0.3 + 0.4 + 0.5)]
    for got, want in zip(depth.frame.itertuples(index=False), expected, strict=True):
        assert (got.bid_depth, got.ask_depth) == pytest.approx(want, abs=1e-9)
    quotes = depth.streams["quotes"]
    assert quotes.iloc[1].tolist() == [999.0, 1000.5, 2.0, 4.0]


def test_binance_depth_csv_refusals(tmp_path: Path) -> None:
    rows = _snapshot_rows()
    gap = _depth_csv(tmp_path, "a_depth.csv", [*rows, "ETHUSDT,1700000001000,98,103,b,set,999.00,1.000,97",
                                               "ETHUSDT,1700000002000,106,110,b,set,999.00,2.000,105"])
    assert error_of(gap) == "line 17: update ids jump from 103 to 105: updates are missing"
    crossed = _depth_csv(tmp_path, "b_depth.csv", [*rows, "ETHUSDT,1700000001000,98,103,b,set,1002.00,1.000,97"])
    assert error_of(crossed) == "line 16: crossed book after this update (best bid 1002 >= best ask 1001)"
    negative = _depth_csv(tmp_path, "c_depth.csv", [*rows, "ETHUSDT,1700000001000,98,103,b,set,999.00,-1.000,97"])
    assert error_of(negative) == "line 16: column 'qty' is negative (-1)"
    side = _depth_csv(tmp_path, "d_depth.csv", [*rows[:3], "ETHUSDT,1700000000000,100,100,x,snap,990.00,1.000,-1"])
    assert error_of(side) == "line 5: column 'side' is not a book side (a/b) ('x')"
    kind = _depth_csv(tmp_path, "e_depth.csv", [*rows[:3], "ETHUSDT,1700000000000,100,100,b,delta,990.00,1.000,-1"])
    assert error_of(kind) == "line 5: column 'update_type' is not 'snap' or 'set' ('delta')"
    ids = _depth_csv(tmp_path, "f_depth.csv", [*rows[:3], "ETHUSDT,1700000000000,abc,100,b,snap,990.00,1.000,-1"])
    assert error_of(ids) == "line 5: column 'first_update_id' is not a number ('abc')"
    short = _depth_csv(tmp_path, "g_depth.csv", [*rows[:3], "ETHUSDT,1700000000000,100,100,b,snap,990.00"])
    assert error_of(short) == "expected 9 columns, found 7 on line 5"


# --------------------------------------------------------------------------------------------
# Binance websocket capture (hftbacktest)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture():
    return load_file(shared_file(*CAPTURE))


def _reference_depth(path: Path, n_events: int) -> list[tuple[int, float, float]]:
    """Independent replay with plain dicts (the capture has no gaps): snapshot, then diffs in order."""
    book: dict[str, dict[float, float]] | None = None
    last = 0
    pending, out = [], []

    def apply(data: dict) -> None:
        for key, side in (("b", "bids"), ("a", "asks")):
            for price, size in data[key]:
                if float(size) == 0:
                    book[side].pop(float(price), None)
                else:
                    book[side][float(price)] = float(size)

    def top() -> tuple[float, float]:
        bids = sorted(book["bids"].items(), reverse=True)[:5]
        asks = sorted(book["asks"].items())[:5]
        return sum(s for _, s in bids), sum(s for _, s in asks)

    with gzip.open(path, "rt") as fh:
        for line in fh:
            stamp, text = line.split(" ", 1)
            message = json.loads(text)
            if "lastUpdateId" in message:
                book = {
                    "bids": {float(p): float(s) for p, s in message["bids"]},
                    "asks": {float(p): float(s) for p, s in message["asks"]},
                }
                last = message["lastUpdateId"]
                for data in pending:
                    if data["u"] > last:
                        apply(data)
                out.append((int(stamp), *top()))
            elif message["data"].get("e") == "depthUpdate":
                if book is None:
                    pending.append(message["data"])
                else:
                    apply(message["data"])
                    out.append((int(stamp), *top()))
            if len(out) == n_events:
                return out
    return out


def test_capture_depth_matches_an_independent_replay(capture) -> None:
    assert (capture.kind, capture.format, capture.symbol) == ("depth", "binance_capture", "BTCUSDT")
    depth = capture.frame
    assert len(depth) == 3449  # the snapshot + every diff after it (2 diffs were older than it)
    # The first summary is at the REST snapshot's receive time and already includes the one
    # buffered diff that straddles lastUpdateId + 1 (line 7: U 50093239208 <= 50093239219 <= u).
    assert depth.index[0] == pd.Timestamp(1723161254206652067, tz="UTC")
    reference = _reference_depth(shared_file(*CAPTURE), 400)
    assert depth.index.asi8[:400].tolist() == [r[0] for r in reference]
    got = depth[["bid_depth", "ask_depth"]].to_numpy()[:400]
    np.testing.assert_allclose(got, np.array([r[1:] for r in reference]), rtol=1e-12, atol=1e-12)
    assert validate(capture).ok


def test_capture_summaries_do_not_depend_on_later_messages(capture, tmp_path: Path) -> None:
    # No look-ahead: cutting the capture after 6,000 lines, or rewriting every later depth diff,
    # leaves every summary before the cut unchanged.
    cut = _capture_variant(tmp_path, 6_000, name="btcusdt_cut.gz")
    head = load_file(cut).frame
    assert 0 < len(head) < len(capture.frame)
    pd.testing.assert_frame_equal(head, capture.frame.iloc[: len(head)])

    def rewrite_future(lines):
        for i in range(6_000, len(lines)):
            if "depthUpdate" in lines[i]:
                stamp, text = lines[i].split(" ", 1)
                message = json.loads(text)
                for key in ("b", "a"):  # every added or changed level gets size 7 (deletions kept)
                    message["data"][key] = [[p, q if float(q) == 0 else "7.0"] for p, q in message["data"][key]]
                lines[i] = f"{stamp} {json.dumps(message)}\n"
        return lines

    changed = load_file(_capture_variant(tmp_path, 7_000, rewrite_future, name="btcusdt_future.gz")).frame
    pd.testing.assert_frame_equal(changed.iloc[: len(head)], head)
    assert not changed.iloc[len(head) :].equals(capture.frame.iloc[len(head) : len(changed)])


def test_capture_quotes_and_trades_by_hand(capture) -> None:
    quotes, trades = capture.streams["quotes"], capture.streams["trades"]
    assert (len(quotes), len(trades)) == (28040, 9757)
    # Line 3 (bookTicker) and line 4 (trade, m=true: the buyer was the maker -> seller aggressor).
    assert quotes.index[0] == pd.Timestamp(1723161254087891268, tz="UTC")
    assert quotes.iloc[0].tolist() == [61837.63, 61837.64, 3.78826, 1.54698]
    assert trades.index[0] == pd.Timestamp(1723161254087896568, tz="UTC")
    assert trades.iloc[0].tolist() == [61837.63, 0.02, -1]
    assert validate(quotes, kind="quotes").ok and validate(trades, kind="trades").ok



def test_a_kind_argument_selects_a_capture_stream(tmp_path: Path) -> None:
    head = _capture_variant(tmp_path, 60)
    imported = load_file(head)
    selected = load_file(head, kind="trades")
    assert (selected.kind, set(selected.streams)) == ("trades", {"depth", "quotes"})
    assert selected.frame.equals(imported.streams["trades"])
    assert selected.streams["depth"].equals(imported.frame)
    zipped = tmp_path / "btcusdt_20240808.zip"
    with zipfile.ZipFile(zipped, "w") as archive, gzip.open(head, "rb") as fh:
        archive.writestr("btcusdt_20240808.txt", fh.read())
    pd.testing.assert_frame_equal(load_file(zipped).frame, imported.frame)


def _capture_variant(tmp_path: Path, lines: int, edit=None, name: str = "btcusdt_20240808.gz") -> Path:
    with gzip.open(shared_file(*CAPTURE), "rt") as fh:
        head = [next(fh) for _ in range(lines)]
    if edit is not None:
        head = edit(head)
    out = tmp_path / name
    with gzip.open(out, "wt") as fh:
        fh.writelines(head)
    return out


def _first_diff_after_snapshot(lines: list[str]) -> int:
    snap = next(i for i, line in enumerate(lines) if "lastUpdateId" in line)
    return next(i for i in range(snap + 1, len(lines)) if "depthUpdate" in lines[i])


def test_capture_refusals(tmp_path: Path) -> None:
    def drop_a_diff(lines):
        i = _first_diff_after_snapshot(lines)
        return lines[:i] + lines[i + 1 :]

    gap = _capture_variant(tmp_path, 120, drop_a_diff)
    # Line 10 (U 50093239225, u 50093239237) removed: the next diff (now line 53) starts at 50093239238.
    assert error_of(gap) == "line 53: depth update ids jump from 50093239224 to 50093239238: updates are missing"

    def corrupt(lines):
        lines[40] = lines[40][:60] + "\n"
        return lines

    assert error_of(_capture_variant(tmp_path, 60, corrupt)).startswith("line 41: not valid JSON")

    def negative(lines):
        i = _first_diff_after_snapshot(lines)
        message = json.loads(lines[i].split(" ", 1)[1])
        message["data"]["b"][0][1] = "-1.00000000"
        lines[i] = lines[i].split(" ", 1)[0] + " " + json.dumps(message) + "\n"
        return lines

    message = error_of(_capture_variant(tmp_path, 60, negative))
    assert message.startswith("line 10: negative size -1 at price ")

    def crossed(lines):
        i = _first_diff_after_snapshot(lines)
        message = json.loads(lines[i].split(" ", 1)[1])
        message["data"]["b"] = [["61900.00000000", "1.00000000"]]
        lines[i] = lines[i].split(" ", 1)[0] + " " + json.dumps(message) + "\n"
        return lines

    assert error_of(_capture_variant(tmp_path, 60, crossed)).startswith(
        "line 10: crossed book after this update (best bid 61900 >= best ask 61837.6"
    )
    no_snapshot = _capture_variant(tmp_path, 7)
    assert error_of(no_snapshot).startswith("capture has no REST depth snapshot")


# --------------------------------------------------------------------------------------------
# Scenario wiring, features, CLI
# --------------------------------------------------------------------------------------------


def _files_config(tmp_path: Path, **fields) -> DataConfig:
    return DataConfig(source="files", reference_symbol=None, **fields)


def test_depth_paths_attach_real_depth_to_the_traded_symbol(tmp_path: Path, caplog) -> None:
    path = _capture_variant(tmp_path, 20_000, name="btcusdt_a.gz")  # about 2.9 minutes
    partial = _capture_variant(tmp_path, 8_000, name="btcusdt_b.gz")  # about the first 1.2 of them
    config = _files_config(tmp_path, symbol="BTCUSDT", paths=(path,), depth_paths=(partial,))
    with caplog.at_level(logging.WARNING):
        market = FilesSource().load(config)
    data = market["BTCUSDT"]
    assert data.has_ticks and len(data.bars) == 4 and len(data.quotes) and len(data.depth)
    assert data.depth.index[-1] < data.bars.index[-1]
    assert "bars outside it get no depth features" in caplog.text
    wrong = DataConfig(source="files", reference_symbol=None, symbol="ETHUSDT", paths=(path,), depth_paths=(partial,))
    with pytest.raises(DataError, match="says BTCUSDT, but it is listed in data.paths for ETHUSDT"):
        FilesSource().load(wrong)  # the traded file names its symbol (lbml.data.plausibility)
    renamed = tmp_path / "ETHUSDT_capture.gz"  # a file whose name vouches for ETHUSDT: the depth file is checked
    renamed.write_bytes(path.read_bytes())
    wrong = DataConfig(source="files", reference_symbol=None, symbol="ETHUSDT", paths=(renamed,), depth_paths=(partial,))
    with pytest.raises(DataError, match="depth file is for BTCUSDT but data.symbol is ETHUSDT"):
        FilesSource().load(wrong)
    far = _files_config(tmp_path, symbol="BTCUSDT", paths=(path,), depth_paths=(shared_file(*TARDIS_5),))
    with pytest.raises(DataError, match="outside the bars' span"):
        FilesSource().load(far)
    tardis = (shared_file(*TARDIS_5), shared_file(*TARDIS_25))
    both = _files_config(tmp_path, symbol="BTCUSDT", paths=(path,), depth_paths=tardis)
    with pytest.raises(DataError, match="depth overlaps"):
        FilesSource().load(both)
    assert DataConfig(source="synthetic").depth_paths == ()
    with pytest.raises(ValueError, match="depth_paths needs source = 'files'"):
        DataConfig(source="synthetic", depth_paths=(path,))


def test_depth_features_on_real_depth_and_trades(capture) -> None:
    from lbml.data.frames import InstrumentData

    trades = capture.streams["trades"]
    bars = bars_from_trades(trades, 1)
    data = InstrumentData("BTCUSDT", bars=bars, trades=trades, quotes=capture.streams["quotes"], depth=capture.frame)
    make = lambda: FeaturePipeline([DepthFeatures(volume_window=2)])  # noqa: E731
    features = compute_features(make(), data, bars)
    depth = capture.frame
    for k in range(1, len(bars)):
        close = bars.index[k]
        last = depth[depth.index < close].iloc[-1]  # latest snapshot strictly before the close
        mean = bars["volume"].iloc[k - 1 : k + 1].mean()
        got = features.iloc[k][["mi_bid_depth_5", "mi_ask_depth_5"]].tolist()
        assert got == pytest.approx([last["bid_depth"] / mean, last["ask_depth"] / mean], rel=1e-12)
    assert features.iloc[0].isna().all()  # warm-up
    report = check_features(make, FeatureInputs(data, bars), bars.index[2], cuts=[1, 2, 3, 4])
    assert all(r.causal and r.parity_ok and r.nonfinite_after_warmup == 0 for r in report.results)


def test_cli_validates_depth_files() -> None:
    path = shared_file(*TARDIS_5)
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "data", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "(tardis_book_snapshot, depth, 10 rows)" in proc.stdout
    assert f"== {path} [quotes] (10 rows)" in proc.stdout
