"""A real headless Chromium driven over the DevTools protocol (no chromedriver, no Selenium).

``Chromium`` starts the browser with a private profile and remote debugging on a free loopback port,
attaches to its page over a WebSocket (``websockets``' synchronous client) and offers the three
things the dashboard tests need: open a URL, evaluate JavaScript in the rendered page, screenshot.
"""

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from .watch_support import free_port, wait_for

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed (scripts/install-system-deps.sh test installs Debian's chromium)")


class Chromium:
    def __init__(self, profile: Path, width: int = 1400, height: int = 1050) -> None:
        self._port = free_port()
        argv = [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", f"--remote-debugging-port={self._port}",
                "--remote-debugging-address=127.0.0.1", "about:blank"]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._id = 0
        try:
            target = wait_for(self._page_target, 60, "Chromium's DevTools endpoint")
            self._ws = connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=30)
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self._proc.kill()
            self._proc.wait()
            raise

    def _page_target(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/json/list", timeout=2) as response:
                targets = json.loads(response.read())
        except OSError:
            return None
        return next((t for t in targets if t.get("type") == "page"), None)

    def call(self, method: str, timeout_s: float = 30.0, **params) -> dict:
        self._id += 1
        my_id = self._id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        wait_for(lambda: self.evaluate("document.readyState") == "complete", 30, f"{url} to load")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
