import os
from pathlib import Path

import pytest
from hypothesis import settings

from lbml.plugins import load_registry
from lbml.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]

# Property tests draw the same examples on every run (a suite that gates a merge must not depend on
# luck); `HYPOTHESIS_PROFILE=explore pytest ...` draws new random examples locally.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR") or ROOT.parent / "shared" / "data")


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    # Tests never inherit a developer's settings.
    for key in list(os.environ):
        if key.startswith("LBML_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(ROOT)


@pytest.fixture
def registry():
    return load_registry()


@pytest.fixture
def small_scenario():
    """The default scenario on a short synthetic market (fast enough for unit tests)."""
    return load_scenario(ROOT / "scenarios" / "default.toml").with_data(days=4)


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def without_calibration(scenario):
    """``scenario`` without a calibration block, for tests of the plumbing rather than the model.

    On two or three days of data the calibrator often finds that the model ranks no better than
    chance on its block and maps it to the base rate: a constant model, which training refuses
    (``lbml.models.degenerate``).
    """
    return scenario.model_copy(update={"validation": scenario.validation.model_copy(update={"calibration": "none"})})


def without_edge_gate(scenario):
    """``scenario`` with the edge gate off (``[gate] enabled = false``), for tests of trading mechanics.

    A model trained on a few days rarely shows significant out-of-fold evidence, and a closed gate
    trades nothing; these tests need trades to check fills, ledgers and recovery, not the model.
    """
    return scenario.model_copy(update={"gate": scenario.gate.model_copy(update={"enabled": False})})
