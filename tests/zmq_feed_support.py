"""A ZeroMQ publisher for paper-session tests: sends a list of raw messages, then the end marker."""

import socket
import threading

import zmq

from lbml.live.events import END_OF_STREAM


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Publisher:
    """Binds an XPUB socket and, once a subscriber connects, sends ``messages`` then ``{"type": "end"}``.

    Use as a context manager around the session; ``sent`` counts the messages sent and ``error``
    says why nothing was sent (no subscriber within ``wait_s``).
    """

    def __init__(self, endpoint: str, messages: list[bytes], wait_s: float = 120.0) -> None:
        self.endpoint = endpoint
        self.messages = messages
        self.wait_s = wait_s
        self.sent = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="test-publisher", daemon=True)

    def _run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind(self.endpoint)
        try:
            if not sock.poll(int(self.wait_s * 1000), zmq.POLLIN):
                self.error = f"no subscriber within {self.wait_s} s"
                return
            sock.recv()  # the subscription
            for message in self.messages:
                sock.send(message)
                self.sent += 1
            sock.send(END_OF_STREAM)
        finally:
            sock.close(linger=5000)

    def __enter__(self) -> "Publisher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(self.wait_s + 10)
