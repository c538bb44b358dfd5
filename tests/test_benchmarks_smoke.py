"""The benchmark suite runs end to end at "smoke" size (no timing assertions: figures are measured,
not judged, in tests)."""

import json
import math
import re

import pytest

from benchmarks import run as bench_run

EXPECTED = {
    "backtest_bars_throughput", "backtest_ticks_throughput", "backtest_chunk_scaling", "backtest_peak_rss",
    "per_bar_latency_p50", "per_bar_latency_p99", "per_bar_compute_p50", "per_bar_compute_p99",
    "model_inference_p50", "model_inference_p99", "compiled_trees_max_abs_diff",
    "backtest_bars_throughput_vs_traded_only", "backtest_ticks_throughput_vs_traded_only",
    "backtest_bars_engine_floor_with_orders", "per_bar_engine_order_sending_p99",
}


def test_runner_discovers_every_bench_module():
    topics = bench_run.discover()
    assert "backtest" in topics
    assert all(not t.startswith("_") for t in topics)


def test_backtest_benchmark_smoke(tmp_path, capsys):
    assert bench_run.main(["--size", "smoke", "--only", "backtest", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "latest.json").read_text())
    rows = {r["name"]: r for r in document["results"]}
    assert EXPECTED <= rows.keys()
    for row in rows.values():
        assert set(bench_run.ROW_KEYS) <= row.keys()
        assert math.isfinite(row["value"]) and row["value"] >= 0
        if row["baseline"] is not None:
            assert row["ratio"] == pytest.approx(row["value"] / row["baseline"])
        if row["target"] is not None:
            assert isinstance(row["met"], bool)
    assert rows["backtest_ticks_throughput"]["note"].startswith("20,")  # ~20k trade ticks fed
    for name in ("backtest_bars_throughput", "backtest_ticks_throughput"):
        # The target's baseline replays exactly the ML run's engine events (reference symbol, custom data).
        note = rows[name]["note"]
        ml_events = re.search(r"\(([\d,]+) engine events", note).group(1)
        baseline_events = re.search(r"on the same ([\d,]+) events", note).group(1)
        assert ml_events == baseline_events, note
        traded = int(note.split(" ", 1)[0].replace(",", ""))
        assert int(ml_events.replace(",", "")) > traded  # more than the traded symbol's own events
    # The engine floor replays every order command the ML run sent, and they make fills there too.
    floor = rows["backtest_bars_engine_floor_with_orders"]["note"]
    sent = int(re.search(r"sending the ML run's ([\d,]+) order commands", floor).group(1).replace(",", ""))
    fills = int(re.search(r"; ([\d,]+) fills against", floor).group(1).replace(",", ""))
    assert sent > 0 and fills > 0, floor
    md = (tmp_path / "latest.md").read_text()
    assert "| backtest | backtest_bars_throughput |" in md
    assert "| backtest | backtest_bars_throughput |" in capsys.readouterr().out


def test_unknown_benchmark_is_a_one_line_error(tmp_path, capsys):
    assert bench_run.main(["--only", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmarks: error: --only: no benchmark nope")
    assert not any(tmp_path.iterdir())


def test_rows_breaking_the_convention_are_rejected():
    with pytest.raises(bench_run.BenchError, match="bench_x.run: row 0 .* lacks unit"):
        bench_run.check_rows("x", [{"name": "a", "value": 1, "baseline": None, "ratio": None,
                                   "target": None, "met": None, "note": ""}])
    with pytest.raises(bench_run.BenchError, match="must return a list"):
        bench_run.check_rows("x", {"name": "a"})


def test_markdown_table_formats_values():
    table = bench_run.markdown_table([
        {"benchmark": "b", "name": "n", "value": 123456.7, "unit": "bars/s", "baseline": 1000.0,
         "ratio": 123.4567, "target": ">= 1", "met": True, "note": "a|b"},
    ])
    assert "| b | n | 123,457 | bars/s | 1,000 | 123x | >= 1 | yes | a/b |" in table


def test_lbml_bench_command_passes_arguments_through(tmp_path, capsys):
    from lbml.cli import main

    assert main(["bench", "--only", "nope", "--out", str(tmp_path)]) == 2
    assert "no benchmark nope" in capsys.readouterr().err


def test_results_go_to_a_git_ignored_folder_by_default():
    """`make bench` used to rewrite the tracked benchmarks/results/latest.{json,md}."""
    import subprocess

    root = bench_run.HERE.parent
    if subprocess.run(["git", "-C", str(root), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    for name in ("latest.json", "latest.md"):
        path = bench_run.DEFAULT_OUT / name
        assert subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(path)]).returncode == 0, path
        tracked = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch", str(path)], capture_output=True)
        assert tracked.returncode != 0, path


def test_features_benchmark_smoke_compares_the_compiled_path_with_the_python_reference():
    from benchmarks import bench_features

    rows = {r["name"]: r for r in bench_features.run("smoke")}  # raises if the two paths' matrices differ
    p99 = rows["features per-bar incremental p99 (cpu)"]
    assert p99["target"] == "< 30 us" and isinstance(p99["met"], bool)
    assert "baseline: the same plugins in Python" in p99["note"]
    assert "(8 of 8 plugins compiled)" in p99["note"]
    for row in rows.values():
        assert math.isfinite(row["value"]) and row["value"] > 0 and row["baseline"] > 0


def test_backtest_breakdown_accounts_for_the_whole_replay():
    from benchmarks.backtest_breakdown import breakdown

    got = breakdown(3_500, 2_500, smoke=True)
    parts = got["parts"]
    assert got["traded_bars"] > 0
    assert math.isfinite(got["bare_engine_same_events_us_per_bar"]) and got["bare_engine_same_events_us_per_bar"] > 0
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1.0, abs=1e-3)
    assert parts["features (pipeline.update)"]["calls"] >= got["traded_bars"]  # warm-up, then one per traded bar
    from lbml.engine import signal_actor

    assert not hasattr(signal_actor.SignalActor.on_bar, "__wrapped__") and signal_actor.Prediction.__name__ == "Prediction"
    assert all(p["us_per_bar"] >= 0 for k, p in parts.items() if not k.startswith("nautilus"))
