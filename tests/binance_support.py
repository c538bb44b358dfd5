"""A local websocket server speaking Binance's combined-stream protocol, for the binance feed tests.

Like Binance, it takes the first stream from the URL (``/stream?streams=a/b``), answers each
``SUBSCRIBE`` request with ``{"result": null, "id": n}`` and sends only the subscribed streams, as
``{"stream": ..., "data": ...}`` messages. Market events are encoded as real USD-M futures messages
(``trade``, ``bookTicker``, ``depthUpdate`` for ``depth5``, ``markPriceUpdate``), with times in
milliseconds, as Binance sends them.
"""

import json
import threading

from websockets.sync.server import serve

from lbml.live.events import DEPTH, FUNDING, QUOTE, TRADE, MarketEvent

WAIT_S = 60.0  # generous upper bound for the client's subscriptions; never a performance assertion
_MS = 1_000_000


def futures_messages(events: list[MarketEvent]) -> list[tuple[str, dict]]:
    """Encode events as ``(stream, data)`` USD-M futures messages (times must be whole ms).

    A funding settlement becomes a mark-price message announcing the rate for it, sent where the
    settlement is in the sequence (stamped with the previous event's time): the feed releases the
    settlement before the first later event, as the replay does.
    """
    out = []
    last_ms = 0
    for i, e in enumerate(events):
        assert e.ts % _MS == 0, "Binance times are whole milliseconds"
        ms, name = e.ts // _MS, e.symbol.lower()
        if e.kind == TRADE:
            out.append((f"{name}@trade", {"e": "trade", "E": ms, "T": ms, "s": e.symbol, "t": i, "p": repr(e.a),
                                          "q": repr(e.b), "X": "MARKET", "m": e.c < 0}))
        elif e.kind == QUOTE:
            out.append((f"{name}@bookTicker", {"e": "bookTicker", "u": i, "s": e.symbol, "b": repr(e.a),
                                               "B": repr(e.c), "a": repr(e.b), "A": repr(e.d), "T": ms, "E": ms}))
        elif e.kind == DEPTH:
            # Five levels whose sizes (exact binary fractions) sum to the summary exactly.
            def levels(total: float, side: int) -> list[list[str]]:
                parts = [total / 2, total / 4, total / 8, total / 16, total / 16]
                return [[repr(100.0 + side * k), repr(q)] for k, q in enumerate(parts, 1)]

            out.append((f"{name}@depth5@500ms", {"e": "depthUpdate", "E": ms, "T": ms, "s": e.symbol, "U": i,
                                                 "u": i, "pu": i - 1, "b": levels(e.a, -1), "a": levels(e.b, 1)}))
        elif e.kind == FUNDING:
            out.append((f"{name}@markPrice@1s", {"e": "markPriceUpdate", "E": last_ms, "s": e.symbol, "p": "300.0",
                                                 "i": "300.0", "P": "300.0", "r": repr(e.a), "T": ms}))
        last_ms = ms
    return out


class BinanceStreamServer:
    """Serve ``messages`` (``(stream, data)``, or raw text) to one client once it subscribed to ``streams``."""

    def __init__(self, messages: list, streams: set[str]) -> None:
        self.messages = messages
        self.streams = streams
        self.subscribed: list[str] = []
        self.sent = 0
        self.error: BaseException | None = None
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "BinanceStreamServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join()

    def _handle(self, conn) -> None:
        try:
            path = conn.request.path
            assert path.startswith("/stream?streams="), path
            self.subscribed = path.split("=", 1)[1].split("/")
            while not self.streams <= set(self.subscribed):
                request = json.loads(conn.recv(timeout=WAIT_S))
                assert request["method"] == "SUBSCRIBE", request
                self.subscribed += request["params"]
                conn.send(json.dumps({"result": None, "id": request["id"]}))
            for message in self.messages:
                if isinstance(message, str):
                    conn.send(message)
                elif message[0] in self.subscribed:
                    conn.send(json.dumps({"stream": message[0], "data": message[1]}))
                self.sent += 1
            conn.recv(timeout=WAIT_S)  # hold the connection until the client closes it
        except Exception as exc:  # noqa: BLE001 - surfaced by the test
            if type(exc).__name__ not in ("ConnectionClosedOK", "ConnectionClosedError"):
                self.error = exc
