"""The signal publisher on real loopback sockets: schema, sequence, drops, CURVE, tail, CLI."""

import json
import subprocess
import sys
import time

import jsonschema
import msgpack
import pytest
import zmq

from lbml.cli import main
from lbml.engine.messages import Prediction
from lbml.errors import LbmlError
from lbml.signals.actor import signal_from_prediction
from lbml.signals.publisher import SignalPublisher
from lbml.signals.schema import SignalsError, decode
from lbml.signals.security import CurveConfig, generate_keypair, is_loopback_endpoint
from lbml.signals.seqstore import SequenceStore
from lbml.cost_model import CostModel
from lbml.sizing import KellyParams, Payoff, break_even_probability, target_exposure
from nautilus_trader.model.identifiers import InstrumentId

from .signals_support import ROOT, Subscriber, config, make_signal

# Each test waits on a node, a socket or a subprocess: it fails after 120 s instead of hanging.
pytestmark = pytest.mark.timeout(120)

SCHEMA = json.loads((ROOT / "schemas" / "signal.schema.json").read_text())


def test_published_messages_match_the_json_schema_in_json_and_msgpack(tmp_path):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for encoding in ("json", "msgpack"):
        with SignalPublisher(config(tmp_path, encoding=encoding, seq_store=tmp_path / f"{encoding}.db")) as pub:
            sub = Subscriber(pub.endpoint)
            sub.wait(lambda: sub.heartbeats(), "first heartbeat")
            for i in range(3):
                pub.publish(make_signal(3 * i))
            sub.wait(lambda: len(sub.signals()) == 3, "three signals")
        sub.close()
        for message in sub.messages:
            validator.validate(message)
        assert [m["seq"] for m in sub.signals()] == [1, 2, 3]
        assert {m["direction"] for m in sub.signals()} == {"short", "flat", "long"}
        assert sub.signals()[0]["model_id"] == "model-test"
    # The schema is not vacuous: broken payloads are rejected.
    bad = dict(sub.signals()[0])
    for field, value in (("probability", 1.5), ("direction", "up"), ("seq", 0), ("schema_version", 2)):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(bad | {field: value})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({k: v for k, v in bad.items() if k != "horizon"})


def test_decode_rejects_other_versions_wrong_topics_and_garbage():
    payload = {"schema_version": 1, "kind": "heartbeat"}
    assert decode(b"heartbeat", msgpack.packb(payload))["kind"] == "heartbeat"
    with pytest.raises(SignalsError, match="schema_version"):
        decode(b"heartbeat", json.dumps(payload | {"schema_version": 2}).encode())
    with pytest.raises(SignalsError, match="does not match"):
        decode(b"signal.BTCUSDT", json.dumps(payload).encode())
    with pytest.raises(SignalsError, match="undecodable"):
        decode(b"heartbeat", b"{not json")


def test_sequence_store_continues_after_reopen_is_exclusive_and_detects_damage(tmp_path):
    path = tmp_path / "state" / "signals.seq"
    store = SequenceStore(path)
    assert [store.next() for _ in range(5)] == [1, 2, 3, 4, 5]
    with pytest.raises(SignalsError, match="in use by another publisher"):
        SequenceStore(path)
    store.close()
    store = SequenceStore(path, fsync=True)
    assert store.last == 5 and store.next() == 6
    store.close()
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(SignalsError, match="damaged sequence file"):
        SequenceStore(path)
    path.write_bytes(b"\x07" * 3)
    with pytest.raises(SignalsError, match="signals.seq: damaged"):
        SequenceStore(path)


def test_publisher_restart_continues_the_sequence(tmp_path):
    cfg = config(tmp_path)
    with SignalPublisher(cfg) as pub:
        assert [pub.publish(make_signal(i)) for i in range(3)] == [1, 2, 3]
    with SignalPublisher(cfg) as pub:
        sub = Subscriber(pub.endpoint)
        sub.wait(lambda: sub.heartbeats(), "heartbeat")
        assert sub.heartbeats()[-1]["last_seq"] == 3
        pub.publish(make_signal(3))
        sub.wait(lambda: sub.signals(), "signal")
    sub.close()
    assert sub.signals()[0]["seq"] == 4


def test_stats_count_the_connected_subscribers_and_heartbeats_report_them(tmp_path):
    seen = []
    with SignalPublisher(config(tmp_path), on_heartbeat=seen.append) as pub:
        assert pub.stats().peers == 0
        subs = [Subscriber(pub.endpoint) for _ in range(2)]
        for sub in subs:
            sub.wait(lambda: sub.heartbeats(), "heartbeat")  # connected
        assert pub.stats().peers == 2
        subs[0].close()
        subs[0].wait(lambda: pub.stats().peers == 1, "a disconnection")
        subs[1].wait(lambda: seen and seen[-1].peers == 1, "a heartbeat counting one subscriber")
    subs[1].close()


def test_a_stalled_subscriber_costs_the_healthy_one_nothing(tmp_path):
    """Issue #18: with one subscriber that never reads, the healthy one received 8,237 of 20,000
    signals (a full queue refused the send for everyone). Now only the stalled one loses messages,
    sending never blocks, and the stalled one can tell from the seq jump."""
    with SignalPublisher(config(tmp_path, sndhwm=1000, heartbeat_interval_s=0.05)) as pub:
        ctx = zmq.Context()
        stuck = ctx.socket(zmq.SUB)
        stuck.setsockopt(zmq.RCVHWM, 10)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(pub.endpoint)
        healthy = Subscriber(pub.endpoint)
        assert stuck.poll(10_000)  # connected: the first heartbeat arrived; from now on nobody reads it
        healthy.wait(lambda: healthy.heartbeats(), "heartbeat")
        t0 = time.monotonic()
        seqs = [pub.publish(make_signal(i)) for i in range(20_000)]  # would hang if sends blocked
        assert time.monotonic() - t0 < 30.0
        healthy.wait(lambda: len(healthy.signals()) >= 20_000, "every signal at the healthy subscriber")
    healthy.close()
    assert seqs == list(range(1, 20_001))
    assert [m["seq"] for m in healthy.signals()] == seqs
    late = []
    while stuck.poll(200):
        topic, payload = stuck.recv_multipart()
        message = decode(topic, payload)
        if message["kind"] == "signal":
            late.append(message["seq"])
    stuck.close(linger=0)
    ctx.term()
    assert 0 < len(late) < 20_000, "the stalled subscriber alone lost messages (it sees the seq jump once it reads)"


def _curve_setup(tmp_path):
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    generate_keypair(keys, "server")
    bot_public, bot_secret = generate_keypair(keys, "bot")
    _, intruder_secret = generate_keypair(keys, "intruder")
    allowed.mkdir()
    (allowed / "bot.key").write_text(bot_public.read_text())
    return keys, CurveConfig(keys / "server.key_secret", allowed), bot_secret, intruder_secret


def test_curve_admits_listed_keys_and_an_unlisted_subscriber_receives_nothing(tmp_path):
    keys, curve, bot_secret, intruder_secret = _curve_setup(tmp_path)
    assert (keys / "bot.key_secret").stat().st_mode & 0o777 == 0o600
    with SignalPublisher(config(tmp_path, curve=curve)) as pub:
        bot = Subscriber(pub.endpoint, curve=(keys / "server.key", bot_secret))
        intruder = Subscriber(pub.endpoint, curve=(keys / "server.key", intruder_secret))
        plain = Subscriber(pub.endpoint)
        bot.wait(lambda: len(bot.heartbeats()) >= 2, "heartbeats for the listed key")
        for i in range(50):
            pub.publish(make_signal(i))
        bot.wait(lambda: len(bot.signals()) == 50, "signals for the listed key")
        bot.wait(lambda: len(bot.heartbeats()) >= 5, "more heartbeats")  # time for the others to get any
    for s in (bot, intruder, plain):
        s.close()
    assert intruder.messages == [] and plain.messages == []


def test_keygen_refuses_to_overwrite(tmp_path, capsys):
    assert main(["signals", "keygen", "--out", str(tmp_path), "--name", "bot"]) == 0
    assert "bot.key_secret" in capsys.readouterr().out
    assert main(["signals", "keygen", "--out", str(tmp_path), "--name", "bot"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lbml: error:") and "already exists" in err and "\n" not in err


@pytest.mark.parametrize(
    "endpoint, loopback",
    [("tcp://127.0.0.1:5557", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True),
     ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5557", False), ("tcp://*:5557", False),
     ("tcp://eth0:5557", False), ("tcp://10.1.2.3:5557", False)],
)
def test_loopback_detection(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback


def test_binding_non_loopback_without_curve_is_refused_unless_overridden(tmp_path, capsys, monkeypatch):
    with pytest.raises(LbmlError, match="not loopback"):
        SignalPublisher(config(tmp_path, endpoint="tcp://0.0.0.0:*"))
    code = main(["backtest", "scenarios/default.toml", "--publish", "--publish-endpoint", "tcp://0.0.0.0:5557"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("lbml: error: signals.endpoint") and "\n" not in err
    with SignalPublisher(config(tmp_path, endpoint="tcp://0.0.0.0:*", allow_insecure=True)) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")


def test_signal_fields_follow_the_strategy_sizing():
    # trades ending at +1 % / -1.5 %, a round trip costing 0.1 %: no edge near p = 0.5
    params = KellyParams(0.25, 3.0, 0.5, 10.0, Payoff.from_brackets(0.01, 0.015, 60.0),
                         CostModel(taker_fee=0.0005, slippage_rate=0.0))
    iid = InstrumentId.from_str("BNBUSDT.BINANCE")
    edge = break_even_probability(0.01, 0.015, 0.001)
    for p, direction in ((0.75, "long"), (0.25, "short"), (0.5, "flat"), (edge - 1e-6, "flat")):
        pred = Prediction(ts_event=5, ts_init=5, instrument_id=iid, probability=p, close=100.0, horizon_bars=15)
        s = signal_from_prediction(pred, params, bar_seconds=60, bracket=(0.015, 0.01))
        assert s.direction == direction and s.symbol == "BNBUSDT" and s.horizon == 900
        assert s.target_leverage == pytest.approx(abs(target_exposure(p, params)))
        assert s.confidence == pytest.approx(abs(2 * p - 1))
        if direction == "long":
            assert s.stop_loss == pytest.approx(98.5) and s.take_profit == pytest.approx(101.0)
            assert s.target_leverage == pytest.approx(min(0.25 * s.kelly_fraction, 1.5))
        elif direction == "short":
            assert s.stop_loss == pytest.approx(101.5) and s.take_profit == pytest.approx(99.0)
        else:
            assert s.stop_loss is None and s.kelly_fraction == 0.0 and s.target_leverage == 0.0


def test_tail_prints_messages_and_flags_gaps_stale_and_recovery(tmp_path):
    from .signals_support import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = config(tmp_path, endpoint=endpoint)
    tail = subprocess.Popen(
        [sys.executable, "-m", "lbml", "signals", "tail", "--endpoint", endpoint, "--stale-after", "0.5",
         "--count", "3", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    lines: list[str] = []

    def read_until(token):
        for line in tail.stdout:
            lines.append(line.rstrip("\n"))
            if token in line:
                return
        raise AssertionError(f"tail ended before {token!r}: {lines} {tail.stderr.read()}")

    with SignalPublisher(cfg) as pub:
        read_until("heartbeat")
        pub.publish(make_signal(0))  # seq 1
        read_until('"seq":1')
    read_until("STALE")
    # Signals 2 and 3 go out on another endpoint: this subscriber never sees them.
    with SignalPublisher(config(tmp_path, seq_store=cfg.seq_store)) as elsewhere:
        elsewhere.publish(make_signal(1))
        elsewhere.publish(make_signal(2))
    with SignalPublisher(cfg) as pub:
        read_until("RECOVERED")
        pub.publish(make_signal(3))  # seq 4
        pub.publish(make_signal(4))  # seq 5
        assert tail.wait(timeout=30) == 0
    lines += tail.stdout.read().splitlines()
    flags = [l for l in lines if l.startswith("!!")]
    assert any("GAP missed seq 2..3" in f for f in flags), flags
    assert not any("REPEAT" in f for f in flags)
    assert sum(1 for l in lines if l.startswith("signal.BTCUSDT ")) == 3


def test_tail_flags_a_bar_sent_under_two_seqs_and_a_resent_seq(tmp_path):
    """Issue #18: a publisher that renumbered a re-sent bar (seq 50 and 51, one bar) passed every
    check of ``lbml signals tail``. A bar under a second seq is flagged; a copy with its own seq
    (what a restarted paper session sends) is a REPEAT."""
    from .signals_support import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    tail = subprocess.Popen(
        [sys.executable, "-m", "lbml", "signals", "tail", "--endpoint", endpoint, "--count", "3", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    lines: list[str] = []
    try:
        with SignalPublisher(config(tmp_path, endpoint=endpoint)) as pub:
            for line in tail.stdout:  # the subscription is live once a heartbeat arrives
                lines.append(line)
                if "heartbeat" in line:
                    break
            bar = make_signal(0)
            pub.publish(bar)  # seq 1
            pub.publish(bar)  # seq 2: the same bar renumbered
            pub.publish(bar, seq=2)  # seq 2 again: a re-sent copy
            assert tail.wait(timeout=60) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
    lines += tail.stdout.read().splitlines()
    flags = [line for line in lines if line.startswith("!!")]
    assert any("RENUMBERED BTCUSDT bar" in f and "seq 2 after seq 1" in f for f in flags), flags
    assert any("REPEAT seq 2" in f for f in flags), flags


def test_a_late_joiner_gets_the_latest_signal_and_others_see_only_a_repeat(tmp_path):
    """Issue #18: the first signal was lost to subscribers that connect at start-up. The latest
    signal of each symbol is sent again, unchanged, when a subscription arrives (last-value cache)."""
    with SignalPublisher(config(tmp_path, heartbeat_interval_s=0.05)) as pub:
        early = Subscriber(pub.endpoint)
        early.wait(lambda: early.heartbeats(), "heartbeat")
        pub.publish(make_signal(0, symbol="ETHUSDT"))  # seq 1
        pub.publish(make_signal(1))  # seq 2
        pub.publish(make_signal(2))  # seq 3: the latest BTCUSDT signal
        early.wait(lambda: len(early.signals()) >= 3, "the live signals")
        late = Subscriber(pub.endpoint, topics=(b"signal.BTC",))
        late.wait(lambda: late.signals(), "the cached signal")
        early.wait(lambda: len(early.signals()) >= 4, "the re-sent copy")
    late.close()
    early.close()
    assert [(m["seq"], m["symbol"]) for m in late.signals()] == [(3, "BTCUSDT")]
    copies = early.signals()[3:]
    assert [m["seq"] for m in copies] == [3] and copies[0] == early.signals()[2]


def test_heartbeat_status_follows_the_age_of_the_last_bar(tmp_path):
    cfg = config(tmp_path, degraded_after_s=0.5, stale_after_s=1.5, heartbeat_interval_s=0.05)
    with SignalPublisher(cfg) as pub:
        sub = Subscriber(pub.endpoint, topics=(b"heartbeat",))
        sub.wait(lambda: sub.heartbeats(), "first heartbeat")
        assert sub.heartbeats()[0]["status"] == "stale"  # no bar seen yet
        pub.publish(make_signal(0))
        for status in ("healthy", "degraded", "stale"):
            sub.wait(lambda: any(h["status"] == status and h["last_seq"] == 1 for h in sub.heartbeats()), status)
        n = len(sub.messages)
        pub.publish(make_signal(1))
        sub.wait(lambda: any(h["status"] == "healthy" for h in sub.heartbeats()[n:]), "healthy again")
    sub.close()
    after_bar = [h["status"] for h in sub.heartbeats() if h["last_seq"] == 1]
    # Ages only grow between bars: the statuses never go back.
    order = {"healthy": 0, "degraded": 1, "stale": 2}
    assert [order[s] for s in after_bar] == sorted(order[s] for s in after_bar)
    assert all(h["last_bar_ts"] is not None for h in sub.heartbeats() if h["last_seq"] >= 1)


def test_tail_subscribes_over_curve_with_a_listed_key(tmp_path):
    keys, curve, bot_secret, _ = _curve_setup(tmp_path)
    with SignalPublisher(config(tmp_path, curve=curve)) as pub:
        tail = subprocess.Popen(
            [sys.executable, "-m", "lbml", "signals", "tail", "--endpoint", pub.endpoint, "--count", "2",
             "--duration", "60", "--server-key", str(keys / "server.key"), "--client-key", str(bot_secret)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        first = tail.stdout.readline()
        assert first.startswith("heartbeat "), (first, tail.stderr.read() if tail.poll() is not None else "")
        pub.publish(make_signal(0))
        pub.publish(make_signal(1))
        assert tail.wait(timeout=30) == 0
    lines = [first] + tail.stdout.read().splitlines()
    assert [json.loads(l.split(" ", 1)[1])["seq"] for l in lines if l.startswith("signal.")] == [1, 2]
