"""A publisher process for the kill/restart test: publish N signals, report, then keep heartbeating.

usage: python -m tests.signals_publisher_proc ENDPOINT SEQ_STORE COUNT
Prints ``published <seq>`` after each signal and ``idle`` when done; runs until killed.
"""

import sys
import threading
from pathlib import Path

from lbml.signals.publisher import PublisherConfig, SignalPublisher
from tests.signals_support import make_signal


def main() -> None:
    endpoint, store, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    config = PublisherConfig(
        model_id="model-test", feature_schema_hash="abc123", endpoint=endpoint, seq_store=store,
        heartbeat_interval_s=0.1,
    )
    publisher = SignalPublisher(config)
    # Let the subscriber (re)connect before the first signal: it tells us by waiting for "ready".
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    for i in range(count):
        seq = publisher.publish(make_signal(i))
        print(f"published {seq}", flush=True)
    print("idle", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
