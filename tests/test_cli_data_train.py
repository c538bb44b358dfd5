"""CLI commands for data and training, run as real subprocesses."""

import json
import subprocess
import sys

import pandas as pd

from lbml.data.synthetic import read_market

from .conftest import shared_file


def lbml(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "lbml", *map(str, args)], capture_output=True, text=True, **kwargs)


def test_data_generate_writes_a_readable_market(tmp_path):
    proc = lbml("data", "generate", "--out", tmp_path / "mkt", "--days", 2, "--seed", 11)
    assert proc.returncode == 0, proc.stderr
    written = [line for line in proc.stdout.splitlines() if line.strip()]
    assert any(line.endswith("manifest.json") for line in written)
    market = read_market(tmp_path / "mkt")
    assert set(market.instruments) == {"BTCUSDT", "BNBUSDT"}
    assert len(market["BNBUSDT"].bars) == 2 * 1440


def test_data_validate_reports_gaps_as_warnings_and_exits_0():
    path = shared_file("klines_1m", "binance_spot_2021-04-02_to_2021-05-14", "BNBUSDT-1m.csv.gz")
    proc = lbml("data", "validate", path)
    assert proc.returncode == 0, proc.stderr
    assert "434 missing bars in 2 gaps (largest: 284 bars" in proc.stdout
    assert "warning" in proc.stdout


def test_data_validate_fails_on_duplicates(tmp_path):
    src = shared_file("klines_format_reference", "ADABTC-1m-2021-11-27.csv")
    lines = src.read_text().splitlines()
    bad = tmp_path / "ADABTC-1m-dup.csv"
    bad.write_text("\n".join(lines[:10] + [lines[9]] + lines[10:]) + "\n")
    proc = lbml("data", "validate", bad)
    assert proc.returncode == 2
    assert "duplicate" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_train_writes_an_artifact_with_manifest(tmp_path):
    scenario = tmp_path / "short.toml"
    text = open("scenarios/default.toml").read().replace("days = 30", "days = 3")
    # no calibration: on 3 days the calibrator maps the model to the base rate, which training refuses
    text += '\n[validation]\ncalibration = "none"\n'
    scenario.write_text(text)
    proc = lbml("train", scenario, "--out", tmp_path / "model")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["model_plugin"] == "xgboost"
    window = manifest["training_window"]
    assert pd.Timestamp(window["start"]) < pd.Timestamp(window["end"])
    assert 0.0 <= manifest["metrics"]["early_stopping_auc"] <= 1.0  # in-sample: the block trees were tuned on
    assert "validation_auc" not in manifest["metrics"]


def test_missing_data_file_is_one_line(tmp_path):
    proc = lbml("backtest", "scenarios/default.toml", "--data", tmp_path / "nope.csv")
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("nope.csv: data file not found")
    assert len(proc.stderr.strip().splitlines()) == 1
