"""Every CLI command, given bad arguments: exit 2, one line on stderr, no traceback, nothing written.

The commands are enumerated from the argparse parser itself, so a new command without a row here
fails ``test_every_command_has_rows``. Each row runs the real ``lbml.cli.main`` in its own forked
process (fresh logging, its own stdout/stderr files, its own working folder): the imports are paid
once, so the whole table takes seconds, not one interpreter start per row.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Imported here so that the forked rows do not each pay for them.
import lbml.cli
import lbml.live.session  # noqa: F401
import lbml.workflows.run  # noqa: F401
from lbml.plugins import load_registry

ROW_TIMEOUT_S = 120


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix]
    return [leaf for name, sub in subs[0].choices.items() for leaf in leaf_commands(sub, prefix + (name,))]


SYNTHETIC = '[data]\nsource = "synthetic"\ndays = 2\n'


def _bars(path: Path, *, start: str = "2024-03-01", n: int = 600, price: float = 400.0, spike_at: int | None = None,
          hole_days: float = 0.0) -> Path:
    """A plain OHLCV CSV (bar open times) of a calm random walk, with an optional 100x spike or hole."""
    rng = np.random.default_rng(3)
    close = price * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    opens = np.r_[price, close[:-1]]
    high, low = np.maximum(opens, close) * 1.0003, np.minimum(opens, close) * 0.9997
    if spike_at is not None:
        high[spike_at] = close[spike_at] * 100
    times = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    if hole_days:
        times = times[: n // 2].append(times[n // 2:] + pd.Timedelta(days=hole_days))
    frame = pd.DataFrame({"open_time": (times.asi8 // 1_000_000), "open": opens, "high": high, "low": low,
                          "close": close, "volume": 10.0})
    frame.to_csv(path, index=False)
    return path


def _files_scenario(folder: Path, name: str, data_file: Path, extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'[data]\nsource = "files"\nsymbol = "BNBUSDT"\nreference_symbol = "BTCUSDT"\n'
                    f'paths = ["{data_file.name}"]\n{extra}')
    return path


@pytest.fixture
def inputs(tmp_path):
    """Bad (and a few good) input files, in ``tmp_path/in``; commands run in ``tmp_path/work``."""
    d = tmp_path / "in"
    d.mkdir()
    p = {"dir": d}

    def scenario(name: str, text: str) -> Path:
        path = d / f"{name}.toml"
        path.write_text(text)
        return path

    p["ok"] = scenario("ok", SYNTHETIC)
    p["binary"] = d / "binary.toml"
    p["binary"].write_bytes(bytes(range(256)) * 8)
    p["empty"] = scenario("empty", "")
    p["no_data"] = scenario("no_data", "[split]\ntrain_fraction = 0.6\n")
    p["string_number"] = scenario("string_number", SYNTHETIC + '[split]\ntrain_fraction = "0.6"\n')
    p["nan_schedule"] = scenario("nan_schedule", SYNTHETIC + '[leverage]\nmodel = "aave_lending"\nborrow_rate = "schedule"\n'
                                 "rate_schedule = [[2024-01-01T00:00:00Z, nan]]\n")
    p["inf_float"] = scenario("inf_float", SYNTHETIC + "[strategy]\nkelly_fraction = inf\n")
    p["huge_balance"] = scenario("huge_balance", SYNTHETIC + "[venue]\nstarting_balance = 1e30\n")
    p["negative_depth"] = scenario("negative_depth", SYNTHETIC + "[model.params]\nmax_depth = -5\n")
    p["unknown_param"] = scenario("unknown_param", SYNTHETIC + "[model.params]\nmax_dept = 3\n")
    p["nan_param"] = scenario("nan_param", SYNTHETIC + "[model.params]\nlearning_rate = nan\n")
    p["eth_for_bnb"] = _files_scenario(d, "eth_for_bnb", _bars(d / "ETHUSDT-1m.csv", price=3000.0))
    p["other_asset"] = _files_scenario(d, "other_asset", _bars(d / "prices.csv", price=30_000.0))
    p["spike"] = _files_scenario(d, "spike", _bars(d / "BNBUSDT-spike.csv", spike_at=300))
    p["hole"] = _files_scenario(d, "hole", _bars(d / "BNBUSDT-hole.csv", hole_days=200))
    p["a_file"] = d / "a_file.txt"
    p["a_file"].write_text("not a folder\n")
    p["a_folder"] = d / "a_folder"
    (p["a_folder"] / "keep").mkdir(parents=True)
    p["previous_run"] = d / "previous_run"
    p["previous_run"].mkdir()
    (p["previous_run"] / "metrics.json").write_text("{}\n")
    p["missing"] = d / "missing.toml"
    return p


# (command, row id, argv after the command); values of the `inputs` fixture by name in {braces}.
ROWS: list[tuple[tuple[str, ...], str, list[str]]] = [
    (("config", "show"), "binary scenario", ["{binary}"]),
    (("config", "show"), "empty scenario", ["{empty}"]),
    (("config", "show"), "no [data] section", ["{no_data}"]),
    (("config", "show"), "number as a string", ["{string_number}"]),
    (("config", "show"), "NaN in rate_schedule", ["{nan_schedule}"]),
    (("config", "show"), "inf in a float", ["{inf_float}"]),
    (("config", "show"), "missing file", ["{missing}"]),
    (("plugins",), "unexpected argument", ["--bogus"]),
    (("data", "generate"), "--out on a file", ["--out", "{a_file}", "--days", "2"]),
    (("data", "generate"), "--days 0", ["--out", "gen", "--days", "0"]),
    (("data", "download"), "--out on a file", ["klines", "BTCUSDT", "--start", "2021-04", "--out", "{a_file}"]),
    (("data", "download"), "--start not a date", ["klines", "BTCUSDT", "--start", "April", "--out", "dl"]),
    (("data", "download"), "symbol not a symbol", ["klines", "btc/usdt", "--start", "2021-04", "--out", "dl"]),
    (("data", "download"), "funding on spot", ["funding", "BTCUSDT", "--start", "2021-04", "--market", "spot",
                                               "--out", "dl"]),
    (("data", "download"), "--base-url not http", ["trades", "BTCUSDT", "--start", "2021-04", "--base-url",
                                                   "ftp://example.org", "--out", "dl"]),
    (("data", "validate"), "missing file", ["{missing}"]),
    (("data", "validate"), "binary file", ["{binary}"]),
    (("train",), "--out on a file", ["{ok}", "--out", "{a_file}"]),
    (("train",), "--out on a previous model", ["{ok}", "--out", "{previous_run}"]),
    (("train",), "max_depth = -5", ["{negative_depth}"]),
    (("train",), "unknown model parameter", ["{unknown_param}"]),
    (("backtest",), "--out on an existing folder", ["{ok}", "--out", "{a_folder}"]),
    (("backtest",), "--out on a file", ["{ok}", "--out", "{a_file}"]),
    (("backtest",), "--out on a previous run", ["{ok}", "--out", "{previous_run}"]),
    (("backtest",), "--model missing", ["{ok}", "--model", "{missing}"]),
    (("backtest",), "binary scenario", ["{binary}"]),
    (("backtest",), "starting_balance = 1e30", ["{huge_balance}"]),
    (("backtest",), "no [data] section", ["{no_data}"]),
    (("backtest",), "ETHUSDT file for BNBUSDT", ["{eth_for_bnb}"]),
    (("backtest",), "another asset's prices", ["{other_asset}"]),
    (("backtest",), "100x spike", ["{spike}"]),
    (("backtest",), "200-day hole", ["{hole}"]),
    (("paper",), "--state on a file", ["{ok}", "--state", "{a_file}"]),
    (("paper",), "--speed 0", ["{ok}", "--speed", "0"]),
    (("paper",), "--model missing", ["{ok}", "--model", "{missing}", "--state", "state"]),
    (("paper",), "--metrics-port 70000", ["{ok}", "--metrics-port", "70000", "--state", "state"]),
    (("report",), "not a state folder", ["{a_folder}"]),
    (("report",), "pbo without a study", ["pbo"]),
    (("report",), "pbo on a missing registry", ["pbo", "study", "--storage", "none.sqlite"]),
    (("dashboard",), "not a state folder", ["{a_folder}", "--port", "0"]),
    (("dashboard",), "--port 70000", ["{a_folder}", "--port", "70000"]),
    (("feed", "serve"), "--speed 0", ["{ok}", "--speed", "0"]),
    (("feed", "serve"), "binary scenario", ["{binary}"]),
    (("search",), "--trials 0", ["{ok}", "--trials", "0"]),
    (("search",), "NaN model parameter", ["{nan_param}", "--trials", "1"]),
    (("search",), "--workers above --trials", ["{ok}", "--trials", "1", "--workers", "2"]),
    (("search",), "--workers 0", ["{ok}", "--trials", "1", "--workers", "0"]),
    (("walkforward",), "--scheduler not local nor an address", ["{ok}", "--scheduler", "ray://nowhere"]),
    (("train",), "--sweep-workers 0", ["{ok}", "--scheduler", "local", "--sweep-workers", "0"]),
    (("runs", "compare"), "a folder without metrics.json", ["{a_folder}", "{a_folder}"]),
    (("runs", "compare"), "unknown run id", ["nope", "nope"]),
    (("walkforward",), "--out on a file", ["{ok}", "--out", "{a_file}"]),
    (("walkforward",), "--every-days -1", ["{ok}", "--every-days", "-1"]),
    (("features", "check"), "--cuts 0", ["{ok}", "--cuts", "0"]),
    (("features", "check"), "--days on a files scenario", ["{spike}", "--days", "3"]),
    (("features", "compute"), "--out on a folder", ["{ok}", "--out", "{a_folder}"]),
    (("features", "compute"), "--out in a missing folder", ["{ok}", "--out", "nowhere/x.parquet"]),
    (("features", "docs"), "--out on a folder", ["--out", "{a_folder}"]),
    (("demo",), "--days 1", ["--days", "1"]),
    (("demo",), "binary scenario", ["--scenario", "{binary}"]),
    (("signals", "keygen"), "--out on a file", ["--out", "{a_file}"]),
    (("signals", "keygen"), "--name with a path", ["--out", "keys", "--name", "../x"]),
    (("signals", "tail"), "endpoint not an address", ["--endpoint", "nope", "--count", "1"]),
    (("signals", "tail"), "--count 0", ["--count", "0"]),
    (("bench",), "--out on a file", ["--out", "{a_file}"]),
    (("bench",), "unknown benchmark", ["--only", "nope", "--out", "bench"]),
]


def test_every_command_has_rows():
    commands = set(leaf_commands(lbml.cli._parser()))
    covered = {command for command, _, _ in ROWS}
    assert commands - covered == set(), "commands without a bad-argument row"
    assert covered - commands == set(), "rows for commands the parser does not have"


def _snapshot(root: Path) -> dict[str, tuple[bool, int]]:
    return {str(p.relative_to(root)): (p.is_dir(), 0 if p.is_dir() else p.stat().st_size) for p in root.rglob("*")}


def _run_forked(argv: list[str], work: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``lbml.cli.main(argv)`` in a forked child, as ``python -m lbml`` would; return (code, stdout, stderr)."""
    out_file, err_file = work.parent / "stdout.txt", work.parent / "stderr.txt"
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            import logging
            import traceback

            with open(out_file, "w") as out, open(err_file, "w") as err:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            logging.root.handlers.clear()  # as in a fresh interpreter: main() configures logging
            os.environ.update(env)
            os.chdir(work)
            try:
                code = lbml.cli.main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + ROW_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1, "", f"did not finish within {ROW_TIMEOUT_S} s\n"
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(status), out_file.read_text(), err_file.read_text()


@pytest.mark.timeout(900)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, inputs):
    load_registry()  # plugin discovery, paid once before the forks
    work, runs, models = tmp_path / "work", tmp_path / "runs", tmp_path / "models"
    for folder in (work, runs, models):
        folder.mkdir()
    env = {"LBML_PATHS__RUNS_DIR": str(runs), "LBML_PATHS__MODELS_DIR": str(models)}
    failures = []
    for command, row, args in ROWS:
        argv = [*command, *(a.format(**inputs) for a in args)]
        before = _snapshot(tmp_path)
        code, out, err = _run_forked(argv, work, env)
        after = _snapshot(tmp_path)
        for name in ("stdout.txt", "stderr.txt"):
            before.pop(name, None)
            after.pop(name, None)
        lines = err.splitlines()
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(lines) != 1 or "Traceback" in err:
            problems.append(f"{len(lines)} stderr lines")
        if out:
            problems.append(f"stdout {out[:80]!r}")
        if after != before:
            added = sorted(set(after) - set(before))
            changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
            problems.append(f"files changed: added {added}, changed {changed}, removed {sorted(set(before) - set(after))}")
        if problems:
            failures.append(f"{' '.join(command)} [{row}]: {'; '.join(problems)}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)


def test_the_entry_point_refuses_a_binary_scenario_in_one_line(tmp_path, inputs):
    # The forked rows call lbml.cli.main; this row goes through `python -m lbml` itself.
    proc = subprocess.run([sys.executable, "-m", "lbml", "backtest", str(inputs["binary"])], capture_output=True,
                          text=True, timeout=ROW_TIMEOUT_S, cwd=tmp_path,
                          env=os.environ | {"PYTHONPATH": str(Path(lbml.cli.__file__).parents[1])})
    assert proc.returncode == 2
    assert proc.stderr == f"lbml: error: {inputs['binary']}: not a scenario file (not UTF-8 text)\n"
    assert proc.stdout == ""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_a_library_warning_is_one_log_line_or_none(level):
    """Regression: a library's warning (urllib3's SOCKS notice, whose ignore filter another thread's
    ``catch_warnings`` had undone) printed two raw lines before a command's one-line error."""
    code = (
        "import threading, warnings\n"
        "from lbml.cli import configure_logging\n"
        f"configure_logging({level!r})\n"
        "warnings.warn('SOCKS support requires\\n  PySocks', UserWarning)\n"
        "thread = threading.Thread(target=lambda: warnings.warn('from a thread', RuntimeWarning))\n"
        "thread.start(); thread.join()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    if level == "ERROR":
        assert lines == []
    else:
        assert len(lines) == 2, lines
        assert lines[0].startswith("WARNING py.warnings: UserWarning: SOCKS support requires PySocks (<string>:")
        assert lines[1].startswith("WARNING py.warnings: RuntimeWarning: from a thread (")
