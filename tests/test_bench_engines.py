"""bench_engines: candidates are parsed, alternated and compared in one run (tiny sizes; no timing
assertions)."""

import sys

import pytest

from benchmarks import bench_engines as be


def test_candidate_strings():
    assert be.parse_candidate("1.221=/venv/bin/python") == ("1.221", "/venv/bin/python", {})
    name, python, kwargs = be.parse_candidate('x=/v/bin/python:{"trade_execution": false}')
    assert (name, python, kwargs) == ("x", "/v/bin/python", {"trade_execution": False})
    with pytest.raises(ValueError, match="NAME=PYTHON"):
        be.parse_candidate("/v/bin/python")


def test_two_candidates_alternate_and_get_paired_ratios():
    me = sys.executable
    result = be.compare([("a", me, {}), ("b", me, {})], modes=("bars",), n=300, rounds=2, log=lambda s: None)
    assert [(r["round"], r["candidate"]) for r in result["runs"]] == [(0, "a"), (0, "b"), (1, "b"), (1, "a")]
    for row in result["summary"]:
        assert not row["errors"]
        assert row["events_per_s"] > 0 and row["events_per_cpu_s"] > 0
        assert row["versions"]["nautilus_trader"]
    a, b = result["summary"]
    assert a["ratio_vs_a"] == 1.0 and b["ratio_vs_a"] > 0
    assert all(r["bars_seen"] == 300 for r in result["runs"])
    table = be.markdown(result)
    assert "| a | bars |" in table and "ratio vs a" in table


def test_ticks_build_internal_bars_and_ema_trades():
    ticks = be.run_worker(sys.executable, "ticks", 600)
    assert ticks["ticks_seen"] == 600 and ticks["bars_seen"] >= 9  # 600 one-second ticks -> ~10 minutes
    ema = be.run_worker(sys.executable, "bars", 400, strategy="ema")
    assert ema["orders"] > 0


def test_a_broken_candidate_is_reported_not_raised():
    res = be.run_worker(sys.executable, "bars", 100, venue_kwargs={"no_such_option": 1})
    assert "error" in res and res["returncode"] != 0
