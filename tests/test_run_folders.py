"""Run folders never collide and an atomic writer never deletes what it did not write (issue #19 item 5)."""

import multiprocessing as mp
from pathlib import Path

import pytest

from lbml.atomic import atomic_folder
from lbml.report.runfolder import new_run_path


def _reserve(args):
    runs, name = args
    return str(new_run_path(Path(runs), name))


@pytest.mark.timeout(120)
def test_runs_started_together_get_their_own_folders(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        paths = pool.map(_reserve, [(str(tmp_path), "default")] * 8)
    assert len(set(paths)) == 8
    assert all(Path(p).is_dir() for p in paths)


def test_a_folder_filled_by_another_run_is_never_deleted(tmp_path):
    final = new_run_path(tmp_path, "default")
    with pytest.raises(FileExistsError, match="written by another run"):
        with atomic_folder(final) as tmp:
            (tmp / "metrics.json").write_text("ours")
            # meanwhile another run (same second, same name, old code) finishes into the same folder
            (final / "metrics.json").write_text("theirs")
    assert (final / "metrics.json").read_text() == "theirs"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # our partial output is gone


def test_a_reservation_is_filled_and_replace_still_overwrites(tmp_path):
    final = new_run_path(tmp_path, "default")
    with atomic_folder(final) as tmp:
        (tmp / "metrics.json").write_text("run")
    assert (final / "metrics.json").read_text() == "run"
    with pytest.raises(FileExistsError):
        with atomic_folder(final):
            pass
    with atomic_folder(final, replace=True) as tmp:
        (tmp / "metrics.json").write_text("again")
    assert (final / "metrics.json").read_text() == "again"


def test_a_failed_run_leaves_no_folder(tmp_path):
    final = new_run_path(tmp_path, "default")
    with pytest.raises(RuntimeError):
        with atomic_folder(final):
            raise RuntimeError("the backtest failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
def test_a_killed_writers_partial_folder_is_removed_by_the_next_run(tmp_path):
    # A backtest killed mid-run used to leave its hidden .NAME.partial-* folder forever.
    import os
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from lbml.atomic import atomic_folder\n"
            "with atomic_folder(Path(sys.argv[1])) as tmp:\n"
            "    (tmp / 'half.csv').write_text('x'); print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run-a")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".run-a.partial-")]
    assert len(left) == 1
    live = tmp_path / f".run-c.partial-{os.getpid()}-abcd"  # a live writer's partial folder stays
    live.mkdir()
    with atomic_folder(tmp_path / "run-b") as tmp:
        (tmp / "done").write_text("ok")
    assert not left[0].exists() and live.is_dir()
    assert (tmp_path / "run-b" / "done").read_text() == "ok"
