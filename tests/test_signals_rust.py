"""End to end: Python publisher → the reference Rust client (clients/rust) on loopback.

The client binary is built once per test session with cargo, offline, against Debian's crates
(``make test`` installs them via scripts/install-system-deps.sh).
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lbml.signals.publisher import SignalPublisher

from .signals_support import ROOT, RUST_CRATE, RustClient, config, free_port, make_signal
from .test_signals import _curve_setup

# Each test waits on a node, a socket or a subprocess: it fails after 300 s instead of hanging.
pytestmark = pytest.mark.timeout(300)


def _cargo() -> str:
    found = shutil.which("cargo") or next(
        (str(p) for p in (Path.home() / ".cargo" / "bin" / "cargo",) if p.exists()), None
    )
    if found is None:
        pytest.fail("cargo not found: run `make test` (scripts/install-system-deps.sh installs it)")
    return found


@pytest.fixture(scope="session")
def rust_client_binary() -> Path:
    build = subprocess.run(
        [_cargo(), "build", "--release", "--quiet"], cwd=RUST_CRATE, capture_output=True, text=True
    )
    assert build.returncode == 0, f"cargo build failed:\n{build.stderr[-4000:]}"
    binary = RUST_CRATE / "target" / "release" / "lbml-signals-client"
    assert binary.is_file()
    return binary


def test_rust_client_decodes_detects_gaps_and_falls_back_when_stale(tmp_path, rust_client_binary):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = config(tmp_path, endpoint=endpoint)
    client = RustClient(rust_client_binary, "--endpoint", endpoint, "--stale-after-ms", "1000")
    try:
        with SignalPublisher(cfg) as pub:
            # Before its first bar the publisher reports a stale feed: the bot stays on its own signals.
            client.wait_for(lambda e: e["event"] == "heartbeat" and e["status"] == "stale", "heartbeat")
            sent = [make_signal(i) for i in range(5)]
            for s in sent:
                pub.publish(s)
            client.wait_for(lambda e: e["event"] == "signal" and e["seq"] == 5, "signal 5")
        got = client.of("signal")
        assert [e["seq"] for e in got] == [1, 2, 3, 4, 5]
        for event, s in zip(got, sent):
            assert (event["symbol"], event["ts_event"], event["direction"]) == (s.symbol, s.ts_event, s.direction)
            assert event["probability"] == s.probability and event["target_leverage"] == s.target_leverage
        # Publisher gone: after 1 s of silence the bot must fall back to its own signals.
        client.wait_for(lambda e: e["event"] == "state" and "no message" in e["reason"], "fallback on silence")
        # Signals 6..7 go out where this client is not listening, then the publisher returns.
        with SignalPublisher(config(tmp_path, seq_store=cfg.seq_store)) as elsewhere:
            elsewhere.publish(make_signal(5))
            elsewhere.publish(make_signal(6))
        with SignalPublisher(cfg) as pub:
            n = len(client.of("heartbeat"))
            client.wait_for(lambda e: e["event"] == "heartbeat" and len(client.of("heartbeat")) > n, "reconnected")
            pub.publish(make_signal(7))
            client.wait_for(lambda e: e["event"] == "signal" and e["seq"] == 8, "signal 8")
    finally:
        stderr = client.close()
    gaps = client.of("gap")
    assert gaps and gaps[0]["expected"] == 6 and gaps[0]["got"] == 8, (gaps, stderr)
    assert client.of("repeat") == [] and client.of("error") == []
    states = client.of("state")
    assert [e["state"] for e in states] == ["fallback", "live", "fallback", "live"], states
    assert "stale feed" in states[0]["reason"] and "no message for" in states[2]["reason"]


def test_rust_client_decodes_messagepack_payloads_exactly(tmp_path, rust_client_binary):
    """A publisher configured for MessagePack: the Rust client decodes every field to the same value."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = RustClient(rust_client_binary, "--endpoint", endpoint, "--stale-after-ms", "5000")
    try:
        with SignalPublisher(config(tmp_path, endpoint=endpoint, encoding="msgpack")) as pub:
            client.wait_for(lambda e: e["event"] == "heartbeat", "heartbeat")
            sent = [make_signal(i) for i in range(3)]
            for s in sent:
                pub.publish(s)
            client.wait_for(lambda e: e["event"] == "signal" and e["seq"] == 3, "signal 3")
    finally:
        stderr = client.close()
    got = client.of("signal")
    assert [e["seq"] for e in got] == [1, 2, 3] and client.of("error") == [], stderr
    for event, s in zip(got, sent):
        assert (event["symbol"], event["ts_event"], event["direction"]) == (s.symbol, s.ts_event, s.direction)
        assert event["probability"] == s.probability and event["target_leverage"] == s.target_leverage


def _start_publisher(endpoint: str, store: Path, count: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.signals_publisher_proc", endpoint, str(store), str(count)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _publish(proc: subprocess.Popen) -> list[int]:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    seqs = []
    for line in proc.stdout:
        if line.strip() == "idle":
            return seqs
        seqs.append(int(line.split()[1]))
    raise AssertionError("publisher exited early")


def test_publisher_killed_and_restarted_continues_the_sequence_and_client_recovers(tmp_path, rust_client_binary):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    store = tmp_path / "seq"
    client = RustClient(rust_client_binary, "--endpoint", endpoint, "--stale-after-ms", "1000")
    first = second = None
    try:
        first = _start_publisher(endpoint, store, 10)
        client.wait_for(lambda e: e["event"] == "heartbeat", "first heartbeat")
        assert _publish(first) == list(range(1, 11))
        client.wait_for(lambda e: e["event"] == "signal" and e["seq"] == 10, "signal 10")
        first.send_signal(signal.SIGKILL)  # no clean shutdown, no last heartbeat
        first.wait(timeout=10)
        client.wait_for(lambda e: e["event"] == "state" and "no message" in e["reason"], "stale after the kill")
        n = len(client.of("heartbeat"))
        second = _start_publisher(endpoint, store, 10)
        client.wait_for(lambda e: e["event"] == "heartbeat" and len(client.of("heartbeat")) > n, "reconnected")
        assert _publish(second) == list(range(11, 21))
        client.wait_for(lambda e: e["event"] == "signal" and e["seq"] == 20, "signal 20")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        client.close()
    assert [e["seq"] for e in client.of("signal")] == list(range(1, 21))
    assert client.of("gap") == [] and client.of("repeat") == []
    states = client.of("state")
    assert [e["state"] for e in states] == ["fallback", "live", "fallback", "live"], states
    assert "no message for" in states[2]["reason"]
    recovered = next(i for i, e in enumerate(client.events) if e is states[3])
    assert client.events[recovered - 1]["event"] == "signal" and client.events[recovered - 1]["seq"] == 11


def test_rust_client_with_curve_and_an_unlisted_rust_client_gets_nothing(tmp_path, rust_client_binary):
    keys, curve, bot_secret, intruder_secret = _curve_setup(tmp_path)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = str(keys / "server.key")
    bot = RustClient(rust_client_binary, "--endpoint", endpoint, "--server-key", server, "--client-key", str(bot_secret))
    intruder = RustClient(rust_client_binary, "--endpoint", endpoint, "--server-key", server,
                          "--client-key", str(intruder_secret))
    try:
        with SignalPublisher(config(tmp_path, endpoint=endpoint, curve=curve)) as pub:
            bot.wait_for(lambda e: e["event"] == "heartbeat", "heartbeat over CURVE")
            for i in range(20):
                pub.publish(make_signal(i))
            bot.wait_for(lambda e: e["event"] == "signal" and e["seq"] == 20, "signal 20 over CURVE")
            bot.wait_for(lambda e: e["event"] == "heartbeat" and len(bot.of("heartbeat")) >= 5, "more heartbeats")
    finally:
        bot.close()
        intruder.close()
    assert len(bot.of("signal")) == 20
    assert [e["event"] for e in intruder.events] == ["ready"]
