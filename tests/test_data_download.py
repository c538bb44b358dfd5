"""``lbml data download`` against a local server in the data.binance.vision layout (issue #19 item 6).

The server (``tests/binance_vision_support.py``) is a real threaded ``http.server`` on loopback with
``Range`` support, serving archives built from the shared data set: the exact data.binance.vision
kline files, Binance spot trades and USD-M funding rates. Every downloaded file must load with lbml's
own importers and hold the same rows as the file it was built from.
"""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lbml.cli import main
from lbml.data.download import DownloadConfig, download_files
from lbml.data.binance_vision import BinanceDataRequest, binance_files, parse_date
from lbml.data.importers import load_file

from .binance_vision_support import KLINE_DAYS, SiteServer, build_site

pytestmark = pytest.mark.timeout(120)

MONTHLY = "data/spot/monthly/klines/ADABTC/1m/ADABTC-1m-2021-11.zip"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    sources = build_site(root)
    with SiteServer(root) as server:
        server.sources = sources
        yield server


def _download(site, out: Path, *argv: str) -> int:
    return main(["data", "download", *argv, "--out", str(out), "--base-url", site.url, "--quiet"])


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lbml: error: "), err
    return err[0]


def test_every_kind_downloads_verified_and_loads_with_the_importers(site, tmp_path, capsys):
    out = tmp_path / "data"
    assert _download(site, out, "klines", "ADABTC", "--start", KLINE_DAYS[0], "--end", KLINE_DAYS[1],
                     "--period", "daily") == 0
    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11") == 0
    assert _download(site, out, "trades", "BTCUSDT", "--start", "2021-01-08", "--period", "daily") == 0
    assert _download(site, out, "funding", "BTCUSDT", "--start", "2021-04") == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and all(line.endswith("  verified") for line in printed)

    for day in KLINE_DAYS:  # the daily archives hold exactly the original data.binance.vision files
        got = load_file(out / f"spot/daily/klines/ADABTC/1m/ADABTC-1m-{day}.zip")
        want = load_file(site.sources["klines"][day])
        assert got.format == want.format == "binance_klines"
        pd.testing.assert_frame_equal(got.frame, want.frame)
    month = load_file(out / "spot/monthly/klines/ADABTC/1m/ADABTC-1m-2021-11.zip")
    days = pd.concat([load_file(site.sources["klines"][d]).frame for d in KLINE_DAYS])
    pd.testing.assert_frame_equal(month.frame, days)

    trades = load_file(out / "spot/daily/trades/BTCUSDT/BTCUSDT-trades-2021-01-08.zip")
    source = pd.read_parquet(site.sources["trades"])
    assert trades.format == "binance_trades" and trades.kind == "trades" and len(trades.frame) == len(source) == 2001
    np.testing.assert_allclose(trades.frame["price"].to_numpy(), source["price"].to_numpy(), rtol=0, atol=1e-9)
    assert (trades.frame.index.asi8 == source["timestamp"].dt.tz_convert("UTC").astype("int64").to_numpy() *
            (10**9 // 10**3 if source["timestamp"].dtype.unit == "ms" else 1)).all()

    funding = load_file(out / "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2021-04.zip")
    assert funding.format == "funding_csv" and funding.kind == "funding"
    assert len(funding.frame) == 90 and (funding.frame.index.month == 4).all()  # 30 days x 3 settlements

    assert not [p for p in out.rglob(".*")]  # no partial file left behind
    for archive in out.rglob("*.zip"):  # each verified file keeps its checksum next to it
        checksum = archive.with_name(archive.name + ".CHECKSUM").read_text().split()[0]
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == checksum


def test_a_second_run_skips_verified_files_without_the_network(site, tmp_path, capsys):
    out = tmp_path / "data"
    argv = ("klines", "ADABTC", "--start", KLINE_DAYS[0], "--end", KLINE_DAYS[1], "--period", "daily")
    assert _download(site, out, *argv) == 0
    served = len(site.state.requests)
    capsys.readouterr()
    assert _download(site, out, *argv) == 0
    assert len(site.state.requests) == served
    assert [line.endswith("already verified") for line in capsys.readouterr().out.splitlines()] == [True, True]


def test_an_interrupted_download_is_resumed_with_a_range_request(site, tmp_path, capsys):
    out = tmp_path / "data"
    site.state.cut[MONTHLY] = 20_000  # the connection drops after 20,000 bytes, once
    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11") == 2
    line = _one_error_line(capsys)
    assert "interrupted after 20,000 of" in line and "resume" in line
    assert _visible_files(out) == []  # nothing looks complete
    part = out / "spot/monthly/klines/ADABTC/1m/.ADABTC-1m-2021-11.zip.part"
    assert part.stat().st_size == 20_000

    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11") == 0
    assert "(resumed at byte 20,000)" in capsys.readouterr().out
    assert (MONTHLY, "bytes=20000-") in site.state.requests
    final = out / "spot/monthly/klines/ADABTC/1m/ADABTC-1m-2021-11.zip"
    assert final.read_bytes() == (site.state.root / MONTHLY).read_bytes() and not part.exists()
    assert len(load_file(final).frame) == 2 * 1440


def test_a_corrupted_file_fails_with_one_line_and_leaves_nothing(site, tmp_path, capsys):
    served = site.state.root / MONTHLY
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the archive no longer matches its .CHECKSUM
    served.write_bytes(bytes(data))
    out = tmp_path / "data"
    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11") == 2
    line = _one_error_line(capsys)
    assert "checksum mismatch" in line and MONTHLY in line and "deleted" in line
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no data, no checksum, no partial file


def test_a_partial_file_that_is_not_a_prefix_is_replaced_by_a_verified_download(site, tmp_path, capsys):
    """A stale .part (another file's bytes) resumes into a mismatch: deleted, and the rerun is clean."""
    out = tmp_path / "data"
    part = out / "spot/monthly/klines/ADABTC/1m/.ADABTC-1m-2021-11.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11") == 2
    assert "checksum mismatch" in _one_error_line(capsys) and not part.exists()
    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11") == 0


def test_a_missing_file_is_one_line(site, tmp_path, capsys):
    out = tmp_path / "data"
    assert _download(site, out, "klines", "ADABTC", "--start", "2021-11-29", "--period", "daily") == 2
    line = _one_error_line(capsys)
    assert "HTTP 404" in line and "ADABTC-1m-2021-11-29.zip.CHECKSUM" in line
    assert not out.exists() or _visible_files(out) == []


@pytest.mark.parametrize("argv, field", [
    (["klines", "btc-usdt", "--start", "2021-11"], "symbol"),
    (["klines", "ADABTC", "--start", "2021-13"], "--start"),
    (["klines", "ADABTC", "--start", "2021-11-31"], "--start"),
    (["klines", "ADABTC", "--start", "2021-11", "--end", "2021-10"], "--end"),
    (["klines", "ADABTC", "--start", "2021-11", "--interval", "7m"], "--interval"),
    (["funding", "BTCUSDT", "--start", "2021-04", "--market", "spot"], "funding"),
    (["funding", "BTCUSDT", "--start", "2021-04", "--period", "daily"], "funding"),
    (["klines", "ADABTC", "--start", "2021-11", "--base-url", "ftp://example.org"], "--base-url"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, field):
    out = tmp_path / "data"
    code = main(["data", "download", *argv, "--out", str(out), "--quiet"]
                + ([] if "--base-url" in argv else ["--base-url", "http://127.0.0.1:9"]))
    assert code == 2
    assert field in _one_error_line(capsys)
    assert not out.exists()


def test_out_naming_a_file_exits_2(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("not a folder")
    assert main(["data", "download", "klines", "ADABTC", "--start", "2021-11", "--out", str(out),
                 "--base-url", "http://127.0.0.1:9"]) == 2
    assert "--out" in _one_error_line(capsys) and out.read_text() == "not a folder"


def test_progress_bars_go_to_stderr(site, tmp_path, capsys):
    files = binance_files(BinanceDataRequest("klines", "ADABTC", parse_date("2021-11", "--start"),
                                             parse_date("2021-11", "--end", end=True)))
    download_files(files, DownloadConfig(base_url=site.url, out_dir=tmp_path / "data", progress=True))
    captured = capsys.readouterr()
    assert captured.out == "" and "ADABTC-1m-2021-11.zip" in captured.err and "B/s" in captured.err


def test_the_layout_matches_data_binance_vision():
    def paths(kind, start, end, **kw):
        request = BinanceDataRequest(kind, "BTCUSDT", parse_date(start, "--start"), parse_date(end, "--end", end=True), **kw)
        return [f.path for f in binance_files(request)]

    assert paths("klines", "2021-11", "2022-01") == [
        f"data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-{m}.zip" for m in ("2021-11", "2021-12", "2022-01")]
    assert paths("klines", "2024-02-28", "2024-03-01", period="daily", interval="1h", market="usdt_futures") == [
        f"data/futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-{d}.zip" for d in ("2024-02-28", "2024-02-29", "2024-03-01")]
    assert paths("trades", "2021-01-08", "2021-01-08", period="daily") == [
        "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2021-01-08.zip"]
    assert paths("funding", "2021-04", "2021-04", market="usdt_futures") == [
        "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2021-04.zip"]
