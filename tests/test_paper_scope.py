"""Paper trading refuses, up front and in one line, the venue models its state store cannot persist."""

import subprocess
import sys


def test_paper_refuses_lending_scenario_before_writing_state(tmp_path):
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "paper", "scenarios/aave_wbnb_3x.toml", "--state", str(state)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("lbml: error: leverage.model = 'aave_lending': paper trading supports only 'none'")
    assert len(err.splitlines()) == 1
    assert not state.exists()
