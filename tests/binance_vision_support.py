"""A local server in the data.binance.vision layout, for ``lbml data download`` tests.

``build_site`` writes the site's files from the shared data set: the two exact data.binance.vision
kline CSVs (ADABTC, 2021-11-27/28) as daily zips and as the month's zip, Binance spot trades
(nautilus' BTCUSDT 2021-01-08 test file) as a daily ``trades`` zip in Binance's column layout, and
USD-M BTCUSDT funding rates for April 2021 as a monthly ``fundingRate`` zip with Binance's header,
each with its ``.CHECKSUM``. ``SiteServer`` is a threaded ``http.server`` on loopback that answers
``Range`` requests and can cut a response short (an interrupted download) or serve a file whose bytes
do not match its checksum.
"""

import hashlib
import http.server
import io
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .conftest import shared_file

KLINE_DAYS = ("2021-11-27", "2021-11-28")


def _zip_one(csv_name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(csv_name, date_time=(2021, 12, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def _publish(root: Path, path: str, csv_bytes: bytes) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_zip_one(target.name.replace(".zip", ".csv"), csv_bytes))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    (root / (path + ".CHECKSUM")).write_text(f"{digest}  {target.name}\n")


def build_site(root: Path) -> dict[str, Path]:
    """Write the site below ``root``; return the source files each archive was built from."""
    days = {d: shared_file("klines_format_reference", f"ADABTC-1m-{d}.csv") for d in KLINE_DAYS}
    for day, src in days.items():
        _publish(root, f"data/spot/daily/klines/ADABTC/1m/ADABTC-1m-{day}.zip", src.read_bytes())
    _publish(root, "data/spot/monthly/klines/ADABTC/1m/ADABTC-1m-2021-11.zip",
             b"".join(days[d].read_bytes() for d in KLINE_DAYS))

    trades_src = shared_file("trades", "nautilus_binance_spot_BTCUSDT_trades_2021-01-08.parquet")
    trades = pd.read_parquet(trades_src)
    rows = [
        f"{t.trade_id},{t.price:.8f},{t.quantity:.8f},{t.price * t.quantity:.8f},"
        f"{int(t.timestamp.value // 1_000_000)},{'True' if t.buyer_maker else 'False'},True\n"
        for t in trades.itertuples()
    ]
    _publish(root, "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2021-01-08.zip", "".join(rows).encode())

    funding_src = shared_file("funding", "BTCUSDT_funding_rate_8h.csv.gz")
    funding = pd.read_csv(funding_src)
    month = pd.to_datetime(funding.funding_time, unit="ms", utc=True).dt.strftime("%Y-%m") == "2021-04"
    lines = ["calc_time,funding_interval_hours,last_funding_rate\n"] + [
        f"{r.funding_time},8,{r.funding_rate:.8f}\n" for r in funding[month].itertuples()
    ]
    _publish(root, "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2021-04.zip",
             "".join(lines).encode())
    return {"klines": days, "trades": trades_src, "funding": funding_src}


@dataclass
class SiteState:
    root: Path
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection drops (once)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: SiteState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.lstrip("/")
            with state.lock:
                state.requests.append((path, self.headers.get("Range")))
                cut = state.cut.pop(path, None)
            file = state.root / path
            if ".." in path or not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
            start = 0
            wanted = self.headers.get("Range")
            if wanted:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if cut is not None:  # promise the whole body, send part of it, hang up
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


class SiteServer:
    """The site on ``http://127.0.0.1:PORT``, served from a thread; use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.state = SiteState(root)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="binance-vision-site", daemon=True)

    def __enter__(self) -> "SiteServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
