"""Order-book import throughput: a raw Binance websocket capture (hftbacktest layout) rebuilt into
depth summaries, quotes and trades by :mod:`lbml.data.formats.orderbook`.

Value: capture lines imported per second (decompress, JSON, book rebuilt in nautilus' L2 book with
update-id checks, frames built). Baseline, measured in the same run: the floor of any importer of
this format, decompressing and ``json.loads``-ing the same lines and nothing else. The ratio is the
importer's speed as a fraction of that floor.

"smoke" imports the first 5,000 lines of the spot BTCUSDT capture, "full" the whole file (41,249
lines, about six minutes of market). Needs the shared data (``SHARED_DATA_DIR`` or the repo's
``../shared/data``). Run alone: ``python -m benchmarks.bench_orderbook [smoke|full]``.
"""

import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lbml.data.importers import load_file

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ("orderbook", "hftbacktest_binance_spot", "btcusdt_20240808.gz")


def _capture(size: str, workdir: Path) -> tuple[Path, int]:
    data = Path(os.environ.get("SHARED_DATA_DIR") or ROOT.parent / "shared" / "data")
    path = data.joinpath(*CAPTURE)
    if not path.exists():
        raise FileNotFoundError(f"{path}: shared data not available")
    with gzip.open(path, "rt") as fh:
        lines = fh.readlines()
    if size == "smoke":
        lines = lines[:5_000]
        path = workdir / "btcusdt_20240808.gz"
        with gzip.open(path, "wt") as fh:
            fh.writelines(lines)
    return path, len(lines)


def _parse_only(path: Path) -> int:
    n = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            json.loads(line.split(" ", 1)[1])
            n += 1
    return n


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(size: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path, n_lines = _capture(size, Path(tmp))
        repeats = 3 if size == "smoke" else 2
        imported = load_file(path)
        importer = _best_of(lambda: load_file(path), repeats)
        baseline = _best_of(lambda: _parse_only(path), repeats)
    value, base = n_lines / importer, n_lines / baseline
    note = (
        f"{n_lines:,} lines -> {len(imported.frame):,} depth summaries, "
        f"{len(imported.streams['quotes']):,} quotes, {len(imported.streams['trades']):,} trades; "
        f"best of {repeats}"
    )
    return [
        {
            "name": "orderbook_capture_import",
            "value": value,
            "unit": "lines/s",
            "baseline": base,
            "ratio": value / base,
            "target": None,
            "met": None,
            "note": note,
        }
    ]


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(row)
