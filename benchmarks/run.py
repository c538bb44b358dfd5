"""Run lbml's benchmark suite: ``python -m benchmarks.run [--size smoke|full] [--only NAME] [--out DIR]``.

Discovers every ``benchmarks/bench_<topic>.py`` module exposing ``run(size) -> list[dict]`` (rows
with ``name, value, unit, baseline, ratio, target, met, note``), runs them in name order, prints a
Markdown table and writes ``latest.json`` and ``latest.md`` into ``runs/bench/`` (git-ignored: a run
never rewrites tracked files) or ``--out``. Baselines are measured inside each benchmark, in the same
run.
"""

import argparse
import importlib
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "runs" / "bench"  # inside the git-ignored runs/ folder
ROW_KEYS = ("name", "value", "unit", "baseline", "ratio", "target", "met", "note")
SIZES = ("smoke", "full")


class BenchError(Exception):
    """A benchmark module broke the convention or a bad argument was given."""


def discover(directory: Path = HERE) -> list[str]:
    """Return the topics of ``bench_<topic>.py`` modules in ``directory``, sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in directory.glob("bench_*.py"))


def check_rows(topic: str, rows: object) -> list[dict]:
    """Validate what a benchmark returned; raise ``BenchError`` naming the module and field."""
    if not isinstance(rows, list):
        raise BenchError(f"bench_{topic}.run must return a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BenchError(f"bench_{topic}.run: row {i} is {type(row).__name__}, not a dict")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise BenchError(f"bench_{topic}.run: row {i} ({row.get('name')!r}) lacks {', '.join(missing)}")
    return rows


def run_suite(
    topics: Sequence[str], size: str, *, package: str = "benchmarks", log=print
) -> tuple[list[dict], list[dict]]:
    """Run the benchmarks; return (rows tagged with their topic, per-topic summaries)."""
    rows: list[dict] = []
    summaries: list[dict] = []
    for i, topic in enumerate(topics, 1):
        log(f"[{i}/{len(topics)}] bench_{topic} ({size}) ...")
        started = time.perf_counter()
        module = importlib.import_module(f"{package}.bench_{topic}")
        got = check_rows(topic, module.run(size))
        seconds = time.perf_counter() - started
        rows.extend({"benchmark": topic, **row} for row in got)
        summaries.append({"benchmark": topic, "rows": len(got), "seconds": round(seconds, 1)})
        log(f"[{i}/{len(topics)}] bench_{topic} done in {seconds:.1f} s, {len(got)} figures")
    return rows, summaries


def fmt(value: object) -> str:
    """Format a number for the table: 3-4 significant digits, thousands separators."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, int | float):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 1e-2:
            return f"{v:.3g}"
        return f"{v:.2e}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    """Render rows as a Markdown table (ratio = value / baseline)."""
    lines = [
        "| benchmark | figure | value | unit | baseline | ratio | target | met | note |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- | --- |",
    ]
    for r in rows:
        ratio = f"{fmt(r['ratio'])}x" if r["ratio"] is not None else "–"
        cells = [
            r["benchmark"], r["name"], fmt(r["value"]), r["unit"], fmt(r["baseline"]), ratio,
            r["target"] or "–", fmt(r["met"]), str(r["note"]).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out_dir: Path, rows: list[dict], summaries: list[dict], size: str, command: str) -> None:
    """Write ``latest.json`` and ``latest.md`` (each via a temporary file renamed into place)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": size,
        "command": command,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {_cpu_count()} CPUs",
        "benchmarks": summaries,
    }
    document = {"meta": meta, "results": rows}
    md = (
        f"# lbml benchmarks ({size})\n\n`{command}` — {meta['created']}, Python {meta['python']}, "
        f"{meta['machine']}\n\n{markdown_table(rows)}\n"
    )
    for name, text in (("latest.json", json.dumps(document, indent=2, default=str)), ("latest.md", md)):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only bench_NAME (repeatable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for latest.json/latest.md (default runs/bench)")
    args = parser.parse_args(argv)
    available = discover()
    topics = available
    if args.only:
        unknown = [n for n in args.only if n.removeprefix("bench_") not in available]
        if unknown:
            print(
                f"benchmarks: error: --only: no benchmark {', '.join(unknown)} (have {', '.join(available)})",
                file=sys.stderr,
            )
            return 2
        topics = [n.removeprefix("bench_") for n in args.only]
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        rows, summaries = run_suite(topics, args.size, log=lambda m: print(m, file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    write_results(args.out, rows, summaries, args.size, command.strip())
    print(f"\nwrote {args.out / 'latest.json'} and {args.out / 'latest.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
