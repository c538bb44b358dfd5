"""One retrain of a paper session's model, in its own process (``python -m lbml.live.retrain_job JOB_DIR``).

The session (``lbml.live.retrain``) writes the job folder: ``job.json`` (the resolved scenario, the
window, where to write the artifact, the local plugins folder) and ``data/`` (the window's bars,
ticks, depth and funding of every instrument as parquet: what the session has seen up to the
trigger bar, nothing after it). This program trains on it with lbml's training path
(``lbml.research.training.train``: purged CV, EV margin, edge-gate evidence, calibration) and
writes the artifact in the normal format; the session then judges it with the edge gate.

The job runs in a separate process so that training never blocks the session's bar loop, and it
ends itself when the session's process is gone (a ``kill -9`` of the session leaves no orphan
training: the session relaunches the job when it restarts). Training is deterministic given the
window, so a relaunched job writes the same model.

Exit codes: 0 trained, 2 the window cannot give a model (one line on stderr), 3 the session died.
"""

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lbml.data.frames import InstrumentData, MarketData
from lbml.split import Split

JOB_FILE = "job.json"
DATA_DIR = "data"
_KINDS = ("bars", "trades", "quotes", "depth")


@dataclass(frozen=True)
class JobSpec:
    scenario_toml: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    out: Path
    plugins_dir: str | None

    def to_dict(self) -> dict:
        return {"scenario": self.scenario_toml, "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(), "out": str(self.out), "plugins_dir": self.plugins_dir}

    @classmethod
    def from_dict(cls, raw: dict) -> "JobSpec":
        return cls(raw["scenario"], pd.Timestamp(raw["window_start"]), pd.Timestamp(raw["window_end"]),
                   Path(raw["out"]), raw.get("plugins_dir"))


def write_job(job_dir: Path, spec: JobSpec, market: MarketData) -> None:
    """Write ``job.json`` and the window's data (``data/``) for ``spec``; nothing after ``window_end``."""
    data_dir = Path(job_dir) / DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    start, end = spec.window_start, spec.window_end
    tick_start = start - pd.Timedelta(minutes=market.bar_minutes)  # ticks of the window's first bar
    for symbol, inst in market.instruments.items():
        frames = {
            "bars": inst.bars.loc[start:end] if inst.bars is not None else None,
            "trades": inst.trades.loc[tick_start:end] if inst.trades is not None else None,
            "quotes": inst.quotes.loc[tick_start:end] if inst.quotes is not None else None,
            # as-of snapshots: every one up to the window's end (training reads them unclipped too)
            "depth": inst.depth.loc[:end] if inst.depth is not None else None,
        }
        for kind, frame in frames.items():
            if frame is not None:
                frame.to_parquet(data_dir / f"{kind}.{symbol}.parquet", engine="pyarrow", index=True)
    for symbol, funding in market.funding.items():
        funding.loc[start:end].to_parquet(data_dir / f"funding.{symbol}.parquet", engine="pyarrow", index=True)
    meta = spec.to_dict() | {"bar_minutes": market.bar_minutes, "symbols": list(market.instruments),
                             "source": {s: i.source for s, i in market.instruments.items()}}
    tmp = Path(job_dir) / (JOB_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, Path(job_dir) / JOB_FILE)


def read_market(job_dir: Path) -> tuple[JobSpec, MarketData]:
    raw = json.loads((Path(job_dir) / JOB_FILE).read_text())
    data_dir = Path(job_dir) / DATA_DIR
    instruments = {}
    for symbol in raw["symbols"]:
        frames = {kind: _read(data_dir / f"{kind}.{symbol}.parquet") for kind in _KINDS}
        instruments[symbol] = InstrumentData(symbol=symbol, source=raw["source"].get(symbol, ""), **frames)
    funding = {p.name.split(".", 1)[1].rsplit(".", 1)[0]: pd.read_parquet(p) for p in data_dir.glob("funding.*.parquet")}
    return JobSpec.from_dict(raw), MarketData(instruments, funding, raw["bar_minutes"])


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


class RetrainJob:
    """The session's handle on one job: writes the job folder and runs this module, off the bar loop.

    A background thread reads the window's data (``market()``: the session's market up to the
    trigger, ``lbml.live.seen_market``), writes it and waits for the process; then, if it trained,
    runs ``after()`` (the session's judgement and swap preparation) and keeps its value in
    ``result``. ``ended`` (the process is over) and ``returncode`` are read by the session between
    bars; ``wait`` waits for ``after``. ``cancel`` kills the process (the session is stopping).
    """

    def __init__(self, job_dir: Path, spec: JobSpec, market: Callable[[], MarketData],
                 after: Callable[[], object] | None = None) -> None:
        self.job_dir = Path(job_dir)
        self.spec = spec
        self._market = market
        self._after = after
        self.returncode: int | None = None
        self.error: str | None = None
        self.result: object = None
        self._lock = threading.Lock()
        self._proc = None
        self._cancelled = False
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lbml-retrain", daemon=True)

    def start(self) -> "RetrainJob":
        self._thread.start()
        return self

    @property
    def ended(self) -> bool:
        """The training process is over (or could not run): ``returncode`` and ``error`` are final."""
        return self._ended.is_set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> None:
        """Wait until ``after`` has run (the thread is done)."""
        self._thread.join()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _run(self) -> None:
        import subprocess

        log_path = self.job_dir / "job.log"
        try:
            write_job(self.job_dir, self.spec, self._market())
            root = str(Path(__file__).resolve().parents[2])  # lbml's own source tree first
            env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
            with self._lock:
                if self._cancelled:
                    return
                with log_path.open("wb") as log:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-m", "lbml.live.retrain_job", str(self.job_dir), str(os.getpid())],
                        stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                    )
            returncode = self._proc.wait()
            if returncode != 0:
                lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
                self.error = lines[-1] if lines else f"retrain process exited with {returncode}"
            self.returncode = returncode
        except Exception as exc:  # noqa: BLE001 - reported by the session as a failed retrain
            self.returncode, self.error = -1, f"retrain job could not run: {exc!r}"
        finally:
            self._ended.set()
        if self.returncode == 0 and self._after is not None and not self._cancelled:
            try:
                self.result = self._after()
            except Exception as exc:  # noqa: BLE001 - raised again on the session's bar loop
                self.result = exc

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._thread.join(timeout=30)


def _exit_with_the_session(parent: int) -> None:
    """End this process when the session that started it is gone (its parent changes)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(3)

    threading.Thread(target=watch, name="lbml-retrain-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    from lbml.errors import LbmlError
    from lbml.research.training import train
    from lbml.plugins import load_registry
    from lbml.scenario import parse_scenario
    import tomllib

    if len(argv) != 2:
        print("usage: python -m lbml.live.retrain_job JOB_DIR SESSION_PID", file=sys.stderr)
        return 2
    _exit_with_the_session(int(argv[1]))
    try:
        spec, market = read_market(Path(argv[0]))
        scenario = parse_scenario(tomllib.loads(spec.scenario_toml), source="retrain job")
        registry = load_registry(Path(spec.plugins_dir) if spec.plugins_dir else None)
        split = Split(train_start=spec.window_start, train_end=spec.window_end,
                      test_start=spec.window_end, test_end=spec.window_end)
        train(scenario, market, registry, split, spec.out, reports=False)
    except LbmlError as exc:
        print(f"retrain failed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
