"""Signal-stream latency: bar close → message decoded in the reference Rust client, on loopback.

For each message the "bar close" is stamped with the wall clock right before the publishing path
runs (``signal_from_prediction`` + ``SignalPublisher.publish``: sequence commit, JSON encoding,
non-blocking send); the Rust client stamps the wall clock after decoding. Both sides read the same
machine clock. Two loads: one message per millisecond, and bursts of 100 back-to-back messages.

Baselines, measured in the same run: the same loads sent by a bare pyzmq PUB socket (same payload
size, no sequence store, no encoding) to a bare pyzmq SUB in another process. A third pair shows
the trading thread's cost of ``publish`` with a healthy subscriber against one that never reads.

Run alone: ``python -m benchmarks.bench_signals [smoke|full]``.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from lbml.engine.messages import Prediction
from lbml.signals.actor import signal_from_prediction
from lbml.signals.publisher import PublisherConfig, SignalPublisher
from lbml.cost_model import CostModel
from lbml.sizing import KellyParams, Payoff

ROOT = Path(__file__).resolve().parents[1]
CRATE = ROOT / "clients" / "rust"
TARGET_US = 1000.0
BURST = 100

_BASELINE_SUB = r"""
import sys, time, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.setsockopt(zmq.RCVHWM, 1_000_000)
s.setsockopt(zmq.SUBSCRIBE, b""); s.connect(sys.argv[1]); n = int(sys.argv[2])
out = open(sys.argv[3], "w"); print("ready", flush=True)
got = 0
while got < n:
    frames = s.recv_multipart()
    now = time.time_ns()
    if frames[0] == b"ping":
        continue
    out.write(f"{int(frames[1][:19])} {now}\n"); got += 1
out.close()
"""


def run(size: str) -> list[dict]:
    """Measure and return the benchmark records (see the module docstring)."""
    paced_n, bursts = (1_000, 10) if size == "smoke" else (10_000, 100)
    rounds = 2 if size == "smoke" else 5  # lbml and baseline alternate, so both see the same noise
    binary = _build_client()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        paced, base_paced = _alternate(binary, tmp_path, paced_n, 1, rounds)
        burst, base_burst = _alternate(binary, tmp_path, bursts * BURST, BURST, rounds)
        call_fast, call_stuck, dropped = _publish_call_cost(tmp_path, paced_n)
    load = "machine load average %.1f (%d cores)" % (os.getloadavg()[0], os.cpu_count() or 0)
    records = []
    for label, (lat, pub_side), base in (
        ("paced 1/ms", paced, base_paced), (f"bursts of {BURST}", burst, base_burst)
    ):
        for q in (50, 99):
            value, b = float(np.percentile(lat, q)), float(np.percentile(base, q))
            records.append(_record(
                f"signals bar close→Rust decoded p{q}, {label}", value, b,
                f"p{q} < {TARGET_US:.0f} us" if q == 99 else None,
                value < TARGET_US if q == 99 else None,
                f"{len(lat)} messages received; bar close→ts_publish p{q} {np.percentile(pub_side, q):.0f} us; "
                f"baseline: bare pyzmq PUB→SUB one-way, same load, alternating in {rounds} rounds; {load}",
            ))
    for q in (50, 99):
        value, b = float(np.percentile(call_stuck, q)), float(np.percentile(call_fast, q))
        records.append(_record(
            f"signals publish() call p{q}, subscriber that never reads", value, b,
            "within 2x of a healthy subscriber", value <= 2 * b,
            f"trading-thread cost; {dropped} sends refused and counted (incl. heartbeats) during {len(call_stuck)} "
            "publishes; baseline: healthy subscriber",
        ))
    return records


def _alternate(binary: Path, tmp: Path, n: int, burst: int, rounds: int):
    ours, ours_pub, base = [], [], []
    for r in range(rounds):
        total, pub_side = _rust_latencies(binary, tmp, n // rounds, burst, tag=f"{burst}-{r}")
        ours.append(total)
        ours_pub.append(pub_side)
        base.append(_pyzmq_latencies(tmp, n // rounds, burst, tag=f"{burst}-{r}"))
    return (np.concatenate(ours), np.concatenate(ours_pub)), np.concatenate(base)


def _record(name, value, baseline, target, met, note) -> dict:
    return {
        "name": name, "value": round(value, 1), "unit": "us", "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 2) if baseline else None, "target": target, "met": met, "note": note,
    }


def _build_client() -> Path:
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    subprocess.run([cargo, "build", "--release", "--quiet"], cwd=CRATE, check=True)
    return CRATE / "target" / "release" / "lbml-signals-client"


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _pace(n: int, burst: int):
    """Yield message indexes: one per ms, or ``burst`` back-to-back every 50 ms."""
    start = time.perf_counter()
    gap = 0.001 if burst == 1 else 0.05
    for i in range(n):
        if i % burst == 0:
            due = start + (i // burst) * gap
            while (left := due - time.perf_counter()) > 0:
                if left > 0.0003:
                    time.sleep(left - 0.0002)
        yield i


def _wait_for_line(path: Path, needle: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{path}: no {needle!r} within {timeout} s")


def _rust_latencies(binary: Path, tmp: Path, n: int, burst: int, tag: str):
    endpoint = _free_endpoint()
    out = tmp / f"rust-{tag}.jsonl"
    config = PublisherConfig(
        model_id="bench", feature_schema_hash="bench", endpoint=endpoint,
        seq_store=tmp / f"seq-{tag}.seq", sndhwm=100_000,
    )
    params = KellyParams(0.25, 3.0, 0.5, 10.0, Payoff.from_brackets(0.015, 0.01, 60.0),
                         CostModel(taker_fee=0.0005, slippage_rate=0.0))
    with SignalPublisher(config) as publisher, out.open("w") as sink:
        client = subprocess.Popen([str(binary), "--endpoint", endpoint, "--count", str(n)], stdout=sink)
        try:
            _wait_for_line(out, '"heartbeat"')
            from lbml.nautilus.model import InstrumentId

            iid = InstrumentId.from_str("BTCUSDT.BINANCE")
            for i in _pace(n, burst):
                bar_close = time.time_ns()
                prediction = Prediction(
                    ts_event=bar_close, ts_init=bar_close, instrument_id=iid,
                    probability=0.3 + (i % 40) / 100, close=100.0 + i % 7, horizon_bars=15,
                )
                publisher.publish(signal_from_prediction(prediction, params, 60))
            client.wait(timeout=60)
        finally:
            if client.poll() is None:
                client.kill()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    signals = [e for e in events if e["event"] == "signal"]
    total = np.array([e["latency_ns"] for e in signals]) / 1e3
    transport = np.array([e["transport_ns"] for e in signals]) / 1e3
    return total, total - transport


def _pyzmq_latencies(tmp: Path, n: int, burst: int, tag: str) -> np.ndarray:
    endpoint = _free_endpoint()
    out = tmp / f"pyzmq-{tag}.txt"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 1_000_000)
    pub.bind(endpoint)
    sub = subprocess.Popen([sys.executable, "-c", _BASELINE_SUB, endpoint, str(n), str(out)],
                           stdout=subprocess.PIPE, text=True)
    try:
        sub.stdout.readline()
        for _ in range(200):  # until the subscription has reached the publisher
            pub.send_multipart([b"ping", b""])
            time.sleep(0.01)
        filler = b"x" * 380  # about the size of a JSON signal
        for _ in _pace(n, burst):
            pub.send_multipart([b"signal.BTCUSDT", str(time.time_ns()).encode() + filler], flags=zmq.NOBLOCK)
        sub.wait(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
        pub.close(linger=0)
        ctx.term()
    rows = np.loadtxt(out, dtype=np.int64, ndmin=2)
    return (rows[:, 1] - rows[:, 0]) / 1e3


def _publish_call_cost(tmp: Path, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    from lbml.signals.schema import Signal

    results = []
    dropped = 0
    for stuck in (False, True):
        config = PublisherConfig(
            model_id="bench", feature_schema_hash="bench", endpoint=_free_endpoint(),
            seq_store=tmp / f"call-{stuck}.seq", sndhwm=100,
        )
        with SignalPublisher(config) as publisher:
            ctx = zmq.Context()
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, 100)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(publisher.endpoint)
            sub.poll(10_000)  # connected once the first heartbeat is in
            if stuck:  # fill the pipe and the kernel buffers: from here on every send is refused
                filler = Signal("BTCUSDT", time.time_ns(), "long", 0.6, 0.2, 0.5, 0.1, 99.0, 101.5, 900)
                for _ in range(500_000):  # until 1000 sends in a row were refused
                    publisher.publish(filler)
                    if publisher.stats().dropped >= 1000:
                        break
                before = publisher.stats().dropped
            costs = np.empty(n)
            for i in _pace(n, 1):
                signal = Signal("BTCUSDT", time.time_ns(), "long", 0.6, 0.2, 0.5, 0.1, 99.0, 101.5, 900)
                t0 = time.perf_counter_ns()
                publisher.publish(signal)
                costs[i] = (time.perf_counter_ns() - t0) / 1e3
                if not stuck:
                    while sub.poll(0):
                        sub.recv_multipart()
            if stuck:
                dropped = publisher.stats().dropped - before
            sub.close(linger=0)
            ctx.term()
        results.append(costs)
    return results[0], results[1], dropped


def main() -> None:
    size = sys.argv[1] if len(sys.argv) > 1 else "smoke"
    os.chdir(ROOT)
    for r in run(size):
        met = "" if r["met"] is None else (" MET" if r["met"] else " NOT MET")
        print(f"{r['name']:<62} {r['value']:>9} {r['unit']}  baseline {r['baseline']:>8}  "
              f"ratio {r['ratio']}  {r['target'] or ''}{met}\n    {r['note']}")


if __name__ == "__main__":
    main()
