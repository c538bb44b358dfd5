"""A full disk during a backtest and during a paper session (issue #19 item 2).

Each run is a real ``lbml`` process whose writes are refused part-way through: by a file-size limit
(``RLIMIT_FSIZE`` set in the child, with ``SIGXFSZ`` ignored so a write fails with EFBIG instead of
killing the process), which works everywhere, and by a small tmpfs that fills up (ENOSPC) where this
machine lets the test mount one. Either way the command must end with one line naming what it could
not write, exit code 4, leave no output that looks complete, and keep the last good paper state: the
database still opens, its checkpoint is the one the line names, and a rerun resumes from it to the
same result as an uninterrupted session.
"""

import contextlib
import os
import resource
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from lbml.live.session import PaperOptions, run_paper
from lbml.live.state import StateStore
from lbml.plugins import load_registry
from lbml.scenario import load_scenario
from lbml.workflows.prepare import prepare, train_model

from .conftest import ROOT, without_edge_gate
from .paper_support import state_rows

pytestmark = pytest.mark.timeout(600)

BARS = 200
STORAGE_EXIT = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    scenario = without_edge_gate(load_scenario("scenarios/default.toml").with_data(days=4, edge=0.3))
    scenario_file = root / "four_days.toml"
    scenario_file.write_text(scenario.to_toml())
    registry = load_registry()
    prepared = prepare(scenario, registry)
    train_model(prepared, registry, root / "model")
    reference = root / "uninterrupted"
    run_paper(scenario, registry, reference, PaperOptions(speed=1e9, bars=BARS, console=False),
              model_dir=root / "model", prepared=prepared)
    return {"root": root, "file": scenario_file, "model": root / "model", "reference": reference}


def _lbml(argv: list[str], tmp_path: Path, max_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    """Run ``lbml`` in a child process; with ``max_file_bytes``, no file it writes may grow past that."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = dict(os.environ, PYTHONPATH=str(ROOT), LBML_PATHS__RUNS_DIR=str(tmp_path / "runs"))
    return subprocess.run(
        [sys.executable, "-m", "lbml", "--log-level", "ERROR", *argv], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=500, preexec_fn=limit if max_file_bytes is not None else None,
    )


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lbml: error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def _paper_argv(setup, state: Path) -> list[str]:
    return ["paper", str(setup["file"]), "--model", str(setup["model"]), "--state", str(state), "--speed", "1e9",
            "--bars", str(BARS), "--quiet", "--publish-endpoint", _free_endpoint()]


def _free_endpoint() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str):
    """Mount a tmpfs of ``size`` on ``where`` (skip where mounting is not permitted); unmount after."""
    where.mkdir(parents=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "lbml-test", str(where)],
                                 capture_output=True, text=True, timeout=30)
        refused = (mounted.stderr.strip() or "mount failed") if mounted.returncode != 0 else None
    except FileNotFoundError:
        refused = "no mount command"
    if refused is not None:
        pytest.skip(f"cannot mount a tmpfs here ({refused}); the file-size-limit tests cover the same faults")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


# -- backtest --------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_file_bytes", [100_000, 300_000])  # the tables, then the tearsheet
def test_a_backtest_on_a_full_disk_ends_with_one_line_and_leaves_nothing(setup, tmp_path, max_file_bytes):
    out = tmp_path / "out" / "run"
    proc = _lbml(["backtest", str(setup["file"]), "--model", str(setup["model"]), "--out", str(out)], tmp_path,
                 max_file_bytes)
    line = _one_line(proc)
    assert proc.returncode == STORAGE_EXIT, line
    assert str(out) in line and "nothing was kept" in line
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial folder, hidden or not
    assert proc.stdout == ""  # no summary of a run that was not written


def test_a_backtest_into_the_runs_folder_on_a_full_disk_leaves_no_run_folder(setup, tmp_path):
    proc = _lbml(["backtest", str(setup["file"]), "--model", str(setup["model"])], tmp_path, 100_000)
    _one_line(proc)
    assert proc.returncode == STORAGE_EXIT
    left = [p.name for p in (tmp_path / "runs").iterdir() if p.name != ".cache"]  # the look-ahead verdicts
    assert left == []


def test_a_backtest_on_a_full_tmpfs_ends_with_one_line_and_leaves_nothing(setup, tmp_path):
    with _small_tmpfs(tmp_path / "disk", "600k") as disk:
        out = disk / "run"
        proc = _lbml(["backtest", str(setup["file"]), "--model", str(setup["model"]), "--out", str(out)], tmp_path)
        line = _one_line(proc)
        assert proc.returncode == STORAGE_EXIT and "No space left on device" in line, line
        assert list(disk.iterdir()) == []


# -- paper -----------------------------------------------------------------------------------------
def _assert_resumes_to_the_uninterrupted_state(setup, tmp_path, state: Path, line: str) -> None:
    store = StateStore.open_existing(state)  # the last good state still loads
    try:
        kept = store.get("checkpoint")["pos"]
    finally:
        store.close()
    if "keeps its last commit" in line:  # (a failed status.json write names no commit)
        assert f"keeps its last commit (item {kept})" in line
    assert 0 < state_rows(state, "SELECT COUNT(*) FROM equity")[0][0] < BARS
    proc = _lbml(_paper_argv(setup, state), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'"resumed_from": {kept},' in proc.stdout
    ref = setup["reference"]
    for sql in ("SELECT pos, ts, side, quantity, price, commission FROM fills ORDER BY i",
                "SELECT ts, equity, balance, close, borrow, slippage FROM equity ORDER BY i",
                "SELECT seq, ts, probability, close FROM signals ORDER BY seq",
                "SELECT opened, closed, side, quantity, entry_price, exit_price, realized_pnl FROM trades ORDER BY i"):
        assert state_rows(state, sql) == state_rows(ref, sql), sql


def test_a_paper_session_on_a_full_disk_stops_with_one_line_and_resumes(setup, tmp_path):
    """Regression: the commit failure surfaced as a feed failure that claimed "state committed"."""
    state = tmp_path / "state"
    proc = _lbml(_paper_argv(setup, state), tmp_path, 300_000)
    line = _one_line(proc)
    assert proc.returncode == STORAGE_EXIT, line
    assert str(state / "state.sqlite") in line and "state committed" not in line
    assert not list(state.glob("*.tmp")) and not list(state.glob(".*.tmp"))
    _assert_resumes_to_the_uninterrupted_state(setup, tmp_path, state, line)


def test_a_paper_session_on_a_full_tmpfs_stops_with_one_line_and_resumes(setup, tmp_path):
    """Regression: status.json failed every second and the stop dumped tracebacks."""
    with _small_tmpfs(tmp_path / "disk", "256k") as disk:
        state = disk / f"state-{uuid.uuid4().hex[:6]}"
        proc = _lbml(_paper_argv(setup, state), tmp_path)
        line = _one_line(proc)
        assert proc.returncode == STORAGE_EXIT and ("No space left on device" in line or "disk is full" in line), line
        assert not list(state.glob("*.tmp")) and not list(state.glob(".*.tmp"))
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True, timeout=30)  # space again
        _assert_resumes_to_the_uninterrupted_state(setup, tmp_path, state, line)


def test_a_paper_session_that_cannot_write_its_state_at_all_is_one_line(setup, tmp_path):
    state = tmp_path / "state"
    proc = _lbml(_paper_argv(setup, state), tmp_path, 1_000)  # not even the database's first page
    line = _one_line(proc)
    assert proc.returncode == STORAGE_EXIT and str(state) in line, line
    assert not (state / "status.json").exists() and not list(state.glob("*.tmp"))


@pytest.mark.parametrize("registry_exists", [False, True])  # the registry cannot open / the model cannot be written
def test_training_on_a_full_disk_ends_with_one_line_and_leaves_no_model(setup, tmp_path, registry_exists):
    if registry_exists:
        from lbml.research.trials import TrialRegistry
        from lbml.workflows.prepare import TRIALS_FILE

        (tmp_path / "runs").mkdir()
        TrialRegistry(tmp_path / "runs" / TRIALS_FILE).close()
    out = tmp_path / "models" / "m"
    proc = _lbml(["train", str(setup["file"]), "--out", str(out)], tmp_path, 20_000)
    line = _one_line(proc)
    assert proc.returncode == STORAGE_EXIT, line
    assert ("models/m" in line) == registry_exists and ("trials.sqlite" in line) != registry_exists, line
    assert not out.exists() and (not out.parent.exists() or list(out.parent.iterdir()) == [])
