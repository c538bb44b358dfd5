"""``lbml dashboard STATE_DIR``: a browser page that watches a paper session through its state folder.

A standard-library HTTP server (loopback by default) serves two things: the page (``/``, one HTML
file with plain JavaScript and inline SVG charts, nothing fetched from elsewhere) and its data
(``/api/state``, ``lbml.live.dashboard_data.snapshot`` as JSON, built afresh from the folder at each
request). The page polls the data every ``interval_s`` seconds, so it follows a running session and
shows a crashed or finished one as it was left. The server only reads the folder.
"""

import json
import math
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from lbml.errors import ConfigError, LbmlError
from lbml.live.dashboard_data import snapshot


@dataclass(frozen=True)
class DashboardConfig:
    port: int = 8050  # 0: any free port
    host: str = "127.0.0.1"
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if not 0.1 <= self.interval_s <= 3600:
            raise ConfigError(f"--interval must be in 0.1..3600 seconds, got {self.interval_s}")


def page(interval_s: float) -> bytes:
    html = resources.files("lbml.live").joinpath("dashboard.html").read_text()
    return html.replace("__INTERVAL_MS__", str(int(interval_s * 1000))).encode()


class DashboardServer:
    """Serves the dashboard of ``state_dir`` until ``close``."""

    def __init__(self, state_dir: Path, config: DashboardConfig) -> None:
        self.state_dir = Path(state_dir)
        snapshot(self.state_dir)  # refuse a folder without state before listening
        handler = partial(_Handler, self.state_dir, page(config.interval_s))
        try:
            self._httpd = ThreadingHTTPServer((config.host, config.port), handler)
        except OSError as exc:
            raise ConfigError(f"dashboard: cannot listen on {config.host}:{config.port} ({exc})") from None
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def shutdown(self) -> None:
        self._httpd.shutdown()

    def close(self) -> None:
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, state_dir: Path, html: bytes, *args, **kwargs) -> None:
        self._state_dir = state_dir
        self._html = html
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self._html)
        elif path == "/api/state":
            try:
                body, code = json.dumps(_clean(snapshot(self._state_dir)), allow_nan=False), HTTPStatus.OK
            except LbmlError as exc:
                body, code = json.dumps({"error": str(exc)}), HTTPStatus.SERVICE_UNAVAILABLE
            self._send(code, "application/json", body.encode())
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _send(self, code: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass  # one line per poll would flood the console


def _clean(value):
    """JSON without NaN/Infinity (the browser's JSON.parse refuses them): non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
