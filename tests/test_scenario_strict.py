"""Scenarios: strict types, finite floats, an explicit data source, paths relative to the scenario file."""

import os
import shutil
import subprocess
import sys

import pytest

from lbml.data.sources import load_market
from lbml.errors import ConfigError
from lbml.plugins import load_registry
from lbml.scenario import MAX_STARTING_BALANCE, PATH_FIELDS, load_scenario

from .conftest import ROOT, SHARED_DATA

SYNTHETIC = '[data]\nsource = "synthetic"\n'


def _error(tmp_path, body: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(f"{path}: "):]


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[split]\ntrain_fraction = "0.6"\n', "split.train_fraction: Input should be a valid number, got str '0.6'"),
        ("[split]\nembargo_bars = 60.0\n", "split.embargo_bars: Input should be a valid integer"),
        ("[strategy]\ntrailing_stop = 1\n", "strategy.trailing_stop: Input should be a valid boolean"),
        ("[strategy]\nkelly_fraction = nan\n", "strategy.kelly_fraction: Input should be a finite number"),
        ("[costs]\nslippage_bps = inf\n", "costs.slippage_bps: Input should be a finite number"),
        ('[leverage]\nmodel = "aave_lending"\nborrow_rate = "schedule"\nrate_schedule = [[2024-01-01T00:00:00Z, nan]]\n',
         "leverage.rate_schedule.0.1: Input should be a finite number"),
        ("[validation]\nev_margins = [0.0, inf]\n", "validation.ev_margins.1: Input should be a finite number"),
        ("[model.params]\nlearning_rate = nan\n", "model.params: Value error, learning_rate = nan is not a finite number"),
        ('[[features.plugins]]\nplugin = "core"\n[features.plugins.params]\nwindows = [5, inf]\n',
         "features.plugins.0.params: Value error, windows[1] = inf is not a finite number"),
        ("[venue]\nstarting_balance = 1e30\n", "venue.starting_balance: Input should be less than or equal to"),
    ],
)
def test_scenario_values_are_strict_and_finite(tmp_path, body, expected):
    assert _error(tmp_path, SYNTHETIC + body).startswith(expected)


def test_integers_still_fill_float_fields(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SYNTHETIC + "[venue]\nstarting_balance = 10000\n")
    assert load_scenario(path).venue.starting_balance == 10000.0


def test_the_largest_starting_balance_fits_nautilus_money_at_any_leverage():
    from nautilus_trader.model.objects import MONEY_MAX

    from lbml.scenario import LeverageConfig, StrategyConfig

    def upper(field) -> float:
        return next(m.le for m in field.metadata if hasattr(m, "le"))

    most = max(upper(LeverageConfig.model_fields["margin_leverage"]), upper(StrategyConfig.model_fields["max_leverage"]))
    assert most == 125
    assert MAX_STARTING_BALANCE * most < MONEY_MAX


@pytest.mark.parametrize("body", ["", 'name = "x"\n', "[split]\ntrain_fraction = 0.6\n", "[data]\ndays = 3\n"])
def test_a_scenario_must_name_its_data_source(tmp_path, body):
    assert _error(tmp_path, body).startswith("data.source: required")


def test_a_binary_scenario_file_is_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="not a scenario file"):
        load_scenario(path)


def test_relative_data_paths_resolve_against_the_scenario_folder(tmp_path, monkeypatch):
    (tmp_path / "scenarios").mkdir()
    path = tmp_path / "scenarios" / "s.toml"
    path.write_text('[data]\nsource = "files"\npaths = ["../data/BNBUSDT-1m.csv"]\n'
                    f'reference_paths = ["{tmp_path / "abs.csv"}"]\nfunding_paths = ["f.csv"]\n')
    monkeypatch.chdir(ROOT)
    scenario = load_scenario(os.path.relpath(path, ROOT))
    assert scenario.data.paths == (tmp_path / "data" / "BNBUSDT-1m.csv",)
    assert scenario.data.reference_paths == (tmp_path / "abs.csv",)
    assert scenario.data.funding_paths == (tmp_path / "scenarios" / "f.csv",)
    # the resolved scenario saved next to a run loads to the same paths from anywhere
    saved = tmp_path / "run" / "scenario.toml"
    saved.parent.mkdir()
    saved.write_text(scenario.to_toml())
    assert load_scenario(saved).data == scenario.data


def test_shipped_real_data_scenarios_point_at_the_shared_data_next_to_the_repository():
    for name in ("crash_may2021", "btc_perp_funding"):
        data = load_scenario(ROOT / "scenarios" / f"{name}.toml").data
        for field in PATH_FIELDS:
            for path in getattr(data, field):
                assert path.is_relative_to(ROOT.parent / "shared" / "data"), path


@pytest.mark.timeout(300)
def test_cd_scenarios_and_run_a_real_data_scenario(tmp_path, monkeypatch):
    """The issue's case: `cd scenarios && lbml ... crash_may2021.toml` finds its data."""
    if not (SHARED_DATA / "klines_1m").is_dir():
        pytest.skip("shared data not available")
    repo = tmp_path / "repo"  # the layout the scenarios expect: shared/data next to the repository
    (repo / "scenarios").mkdir(parents=True)
    shutil.copy(ROOT / "scenarios" / "crash_may2021.toml", repo / "scenarios")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED_DATA)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBML_")} | {"PYTHONPATH": str(ROOT)}
    shown = subprocess.run([sys.executable, "-m", "lbml", "config", "show", "crash_may2021.toml"], cwd=repo / "scenarios",
                           capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    expected = tmp_path / "shared" / "data" / "klines_1m" / "binance_spot_2021-04-02_to_2021-05-14" / "BNBUSDT-1m.csv.gz"
    assert f'"{expected}"' in shown.stdout  # printed resolved
    monkeypatch.chdir(repo / "scenarios")  # what every command does with it: load the market (and check it)
    scenario = load_scenario("crash_may2021.toml")
    market = load_market(scenario.data, load_registry())
    assert len(market["BNBUSDT"].bars) == 61_273 and "BTCUSDT" in market
