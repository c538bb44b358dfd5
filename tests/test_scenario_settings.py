import subprocess
import sys

import pytest

from lbml.errors import ConfigError
from lbml.scenario import load_scenario, parse_scenario
from lbml.settings import load_settings


def test_default_scenario_loads_and_round_trips(tmp_path):
    scenario = load_scenario("scenarios/default.toml")
    assert scenario.strategy.kelly_fraction == 0.25
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(scenario.to_toml())
    again = load_scenario(resolved)
    assert again == scenario
    assert again.content_hash() == scenario.content_hash()


def test_scenario_is_frozen():
    scenario = load_scenario("scenarios/default.toml")
    with pytest.raises(Exception):
        scenario.strategy.max_leverage = 10


@pytest.mark.parametrize(
    "body, expected",
    [
        ("[strategy]\nleverage = 3\n", "strategy.leverage: unknown key"),
        ("[strategy]\nmax_leverage = 50\n", "strategy.max_leverage: Input should be less than or equal to 20"),
        ("[strategy]\nkelly_fraction = 0\n", "strategy.kelly_fraction: Input should be greater than 0"),
        ("[costs]\ntaker_fee = -0.1\n", "costs.taker_fee"),
        ("typo_section = 1\n", "typo_section: unknown key"),
        ("[data]\nsource = 'files'\n", "data: Value error, source = 'files' needs at least one entry"),
    ],
)
def test_bad_scenarios_name_file_key_and_reason(tmp_path, body, expected):
    path, message = _load_error(tmp_path, body)
    assert expected in message


def _load_error(tmp_path, body: str):
    """Write a scenario with ``body``; return its path and the one-line ``ConfigError`` loading it raises."""
    path = tmp_path / "bad.toml"
    data = "" if "[data]" in body else '\n[data]\nsource = "synthetic"\n'
    path.write_text('name = "bad"\n' + body + data)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return path, message


def test_cli_rejects_unknown_key_with_exit_2_and_one_line(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('name = "typo"\n[data]\nsource = "synthetic"\n[strategy]\nkelly_fractoin = 0.3\n')
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "config", "show", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"lbml: error: {path}: strategy.kelly_fractoin: unknown key"
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_config_show_prints_resolved_scenario():
    proc = subprocess.run(
        [sys.executable, "-m", "lbml", "config", "show", "scenarios/default.toml"],
        capture_output=True, text=True, check=True,
    )
    assert "[strategy]" in proc.stdout and "max_position_fraction = 0.5" in proc.stdout
    body = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("#"))
    import tomllib

    assert parse_scenario(tomllib.loads(body)) == load_scenario("scenarios/default.toml")


def test_settings_toml_then_env_override(tmp_path, monkeypatch):
    config = tmp_path / "lbml.toml"
    config.write_text('log_level = "INFO"\n[signals]\nendpoint = "tcp://127.0.0.1:7000"\n')
    monkeypatch.setenv("LBML_CONFIG", str(config))
    assert load_settings().signals.endpoint == "tcp://127.0.0.1:7000"
    assert load_settings().log_level == "INFO"
    monkeypatch.setenv("LBML_SIGNALS__ENDPOINT", "tcp://127.0.0.1:7001")
    monkeypatch.setenv("LBML_PATHS__RUNS_DIR", str(tmp_path / "runs"))
    settings = load_settings()
    assert settings.signals.endpoint == "tcp://127.0.0.1:7001"
    assert settings.paths.runs_dir == tmp_path / "runs"
    assert settings.log_level == "INFO"


def test_settings_reject_unknown_key(tmp_path, monkeypatch):
    config = tmp_path / "lbml.toml"
    config.write_text("[signals]\nendpont = 'x'\n")
    monkeypatch.setenv("LBML_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"signals.endpont: unknown key"):
        load_settings()


@pytest.mark.parametrize(
    "body, key",
    [
        # the case: a perpetual on exchange margin pays funding, never borrow interest
        ("[leverage]\nmodel = 'exchange_margin'\n[costs]\nborrow_apr_quote = 0.5\n", "costs.borrow_apr_quote"),
        ("[leverage]\nmodel = 'aave_lending'\n[costs]\nborrow_apr_base = 0.2\n", "costs.borrow_apr_base"),
        ("[costs]\nslippage_vol_k = 2.0\n", "costs.slippage_vol_k"),  # fixed slippage model
        ("[leverage]\nmargin_leverage = 10.0\n", "leverage.margin_leverage"),  # model none
        ("[leverage]\nmodel = 'exchange_margin'\nfunding = false\nfunding_multiplier = 3.0\n",
         "leverage.funding_multiplier"),
        ("[leverage]\nmodel = 'exchange_margin'\nltv = 0.5\n", "leverage.ltv"),
        ("[leverage]\nmodel = 'aave_lending'\nborrow_rate = 'utilisation'\nborrow_apr = 0.3\n", "leverage.borrow_apr"),
        ("[leverage]\nmodel = 'aave_lending'\ncurve_slope2 = 2.0\n", "leverage.curve_slope2"),  # constant rate
        ("[leverage]\nmodel = 'aave_lending'\nrate_schedule = [[2024-01-01T00:00:00Z, 0.1]]\n",
         "leverage.rate_schedule"),
    ],
)
def test_a_setting_the_chosen_model_ignores_is_an_error(tmp_path, body, key):
    path, message = _load_error(tmp_path, body)
    assert message.startswith(f"{path}: {key} = ") and "has no effect" in message
    proc = subprocess.run([sys.executable, "-m", "lbml", "config", "show", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == f"lbml: error: {message}"


def test_a_used_setting_or_an_explicit_default_is_accepted(tmp_path):
    path = tmp_path / "fine.toml"
    path.write_text('name = "fine"\n[data]\nsource = "synthetic"\n[leverage]\nmodel = "exchange_margin"\nmargin_leverage = 10.0\nfunding = false\n'
                    '[costs]\nborrow_apr_quote = 0.08\nslippage_model = "volatility"\nslippage_vol_k = 2.0\n')
    scenario = load_scenario(path)
    assert scenario.leverage.margin_leverage == 10.0 and scenario.costs.slippage_vol_k == 2.0


def test_a_scenario_names_only_strategies_of_the_strategies_package(tmp_path, capsys):
    # "this:Nope" used to import the `this` module (printing the Zen of Python) before failing.
    from lbml.cli import main
    from lbml.engine.backtest import load_strategy_class
    from lbml.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[data]\nsource = "synthetic"\n[strategy]\nclass_path = "this:Nope"\n')
    code = main(["config", "show", str(bad)])
    captured = capsys.readouterr()
    assert code == 2 and "strategy.class_path" in captured.err and "\n" not in captured.err.strip()
    assert "Beautiful is better than ugly" not in captured.out + captured.err
    for path in ("this:Nope", "os:system", "strategies.kelly_leverage:KellyLeverageConfig"):
        with pytest.raises(ConfigError, match="strategy.class_path"):
            load_strategy_class(path)
    assert load_strategy_class("strategies.kelly_leverage:KellyLeverage")[0].__name__ == "KellyLeverage"
