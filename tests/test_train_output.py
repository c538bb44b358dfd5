"""What ``lbml train`` shows: progress over stages and folds on a terminal, then a readable table.

Training used to show nothing for minutes and then dump the raw metrics JSON. Both runs below are
real ``lbml train`` processes; one has a pseudo-terminal as stderr (as a user's shell would).
"""

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

import pytest

from lbml.models.summary import training_rows

from .conftest import ROOT

pytestmark = pytest.mark.timeout(600)


def _scenario(tmp_path):
    path = tmp_path / "short.toml"
    text = (ROOT / "scenarios" / "default.toml").read_text().replace("days = 30", "days = 3")
    path.write_text(text + '\n[validation]\ncalibration = "none"\n')  # 3 days: no calibration block
    return path


def _env(tmp_path):
    return dict(os.environ, PYTHONPATH=str(ROOT), LBML_PATHS__RUNS_DIR=str(tmp_path / "runs"))


def test_train_prints_a_table_of_the_stored_metrics_and_no_progress_when_piped(tmp_path):
    out = tmp_path / "model"
    proc = subprocess.run([sys.executable, "-m", "lbml", "train", str(_scenario(tmp_path)), "--out", str(out)],
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "manifest.json").read_text())["metrics"]
    lines = proc.stdout.splitlines()
    assert not any(line.lstrip().startswith(("{", "}", '"')) for line in lines)  # no raw JSON
    assert lines[0].split() == ["model", str(out)]
    for label, value in training_rows(metrics):  # every row, with the artifact's own numbers
        assert any(line.split(label, 1)[-1].strip() == value for line in lines if label in line), label
    assert f"{metrics['oos_auc']:.3f} / {metrics['oos_logloss']:.3f}" in proc.stdout
    assert lines[-1].startswith("tracked: MLflow run ")  # after the table, not before it
    assert "training:" not in proc.stderr and "\r" not in proc.stderr  # stderr is no terminal: no bar


def test_train_shows_stages_and_folds_on_a_terminal_and_json_on_request(tmp_path):
    out = tmp_path / "model"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a terminal has a size
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbml", "train", str(_scenario(tmp_path)), "--out", str(out), "--json"],
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=slave, text=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # keep reading, or the child blocks on a full terminal buffer
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=500)
    reader.join(timeout=30)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal[-3000:]
    for stage in ("features and labels", "cross-validation", "final fit", "artifact and reports"):
        assert f"training: {stage}" in terminal, stage
    assert "fold 1, out-of-fold log loss" in terminal
    payload = json.loads(stdout)
    assert payload["model"] == str(out)
    assert payload["metrics"] == json.loads((out / "manifest.json").read_text())["metrics"]
    assert payload["tracking"]["status"] == "logged"  # the MLflow run is a field, not a stray line
