"""The look-ahead check as a gate: run before anything trains or trades on a scenario's features.

``lbml train``, ``backtest``, ``paper``, ``demo``, ``walkforward`` and ``search`` call
:func:`guard_look_ahead` once the market is loaded. Each usable feature plugin is checked on its own
(``lbml.features.check``) on a bounded window around the end of the training window: the longest
declared warm-up plus ``BARS_BEFORE`` bars before it, ``BARS_AFTER`` after it, ``CUTS`` cut points
on both sides. A verdict is cached as one small JSON file per plugin under the settings' cache folder
(``<runs_dir>/.cache/look_ahead`` unless ``paths.cache_dir`` says otherwise), keyed by the plugin's
name, version, parameters and source-file hash, the hash of the window's data, the fit-window end
and ``CHECK_VERSION``; an unchanged scenario costs one file read per plugin.

A leak stops the command with one line naming the feature and the first bar it changes. With
``allow`` (``--allow-look-ahead``) the command runs, and the result, status ``"overridden"``, goes
into every report it writes (``metrics.json`` key ``look_ahead_check``).
"""

import hashlib
import inspect
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lbml.data.frames import MarketData
from lbml.errors import LbmlError
from lbml.features.base import FeaturePlugin
from lbml.features.check import CHECK_VERSION, CheckReport, FeatureInputs, check_features, describe_leak
from lbml.features.market import reference_bars_for
from lbml.features.pipeline import FeaturePipeline, available_inputs
from lbml.plugins import PluginRegistry
from lbml.scenario import Scenario

log = logging.getLogger(__name__)

BARS_BEFORE = 1500  # on top of the longest warm-up: what the plugins fit on
BARS_AFTER = 1000
CUTS = 4
SEED = 0
OVERRIDE_FLAG = "--allow-look-ahead"
OVERRIDDEN = "overridden"


class LookAheadError(LbmlError):
    """A feature plugin failed the look-ahead check; nothing was trained or traded."""


@dataclass(frozen=True)
class LookAheadPolicy:
    """Where verdicts are cached and whether a failed check may be overridden.

    Parameters
    ----------
    cache_dir : Path
        Folder for cached verdicts (created on first use).
    allow : bool
        Run despite a leak; the result is stamped ``"overridden"`` in every report.
    """

    cache_dir: Path
    allow: bool = False


def guard_look_ahead(
    scenario: Scenario,
    market: MarketData,
    fit_end: pd.Timestamp,
    registry: PluginRegistry,
    policy: LookAheadPolicy,
) -> dict[str, Any]:
    """Check (or recall) every usable feature plugin; raise ``LookAheadError`` on a leak unless allowed.

    Returns
    -------
    dict
        ``status`` (``"passed"``, ``"cached"`` when every verdict came from the cache, or
        ``"overridden"``), the window checked and one entry per plugin.
    """
    started = time.perf_counter()
    cfg = scenario.data
    available = available_inputs(market, cfg.symbol, cfg.reference_symbol)
    specs = []
    for spec in scenario.features.plugins:
        plugin = registry.feature(spec.plugin)(**spec.params)
        if not plugin.inputs - available:
            specs.append((spec, plugin))
    inputs = _window(scenario, market, fit_end, max((p.warmup_bars() for _, p in specs), default=0))
    digest = inputs.digest()
    plugins: dict[str, Any] = {}
    for spec, plugin in specs:
        path = Path(policy.cache_dir) / "look_ahead" / f"{_cache_key(plugin, digest, fit_end)}.json"
        verdict = _read(path)
        if verdict is None:
            make = lambda spec=spec: FeaturePipeline([registry.feature(spec.plugin)(**spec.params)])  # noqa: E731
            fed = inputs.feeding(plugin.inputs)
            verdict = _verdict(plugin, check_features(make, fed, fit_end, n_cuts=CUTS, seed=SEED))
            _write(path, verdict)
            verdict["cached"] = False
        plugins[plugin.name] = verdict
    leaks = [leak for v in plugins.values() for leak in v["leaks"]]
    if leaks and not policy.allow:
        more = f" (and {len(leaks) - 1} more leaking features)" if len(leaks) > 1 else ""
        raise LookAheadError(f"look-ahead: {leaks[0]['message']}{more}; pass {OVERRIDE_FLAG} to run anyway")
    if leaks:
        log.warning("look-ahead check overridden (%s): %s", OVERRIDE_FLAG, leaks[0]["message"])
    status = OVERRIDDEN if leaks else "cached" if all(v["cached"] for v in plugins.values()) else "passed"
    return {
        "status": status,
        "check_version": CHECK_VERSION,
        "window": {"start": inputs.bars.index[0].isoformat(), "end": inputs.bars.index[-1].isoformat(),
                   "fit_end": fit_end.isoformat(), "bars": len(inputs.bars), "cuts": CUTS},
        "seconds": round(time.perf_counter() - started, 3),
        "plugins": plugins,
    }


def summary_line(check: dict[str, Any]) -> str:
    """One line for a command's summary: the status, and the first leak when overridden."""
    if check["status"] != OVERRIDDEN:
        return f"{check['status']} ({len(check['plugins'])} plugins, {check['seconds']:.1f} s)"
    leaks = [leak["message"] for v in check["plugins"].values() for leak in v["leaks"]]
    return f"OVERRIDDEN ({OVERRIDE_FLAG}): {leaks[0]}"


def _window(scenario: Scenario, market: MarketData, fit_end: pd.Timestamp, warmup: int) -> FeatureInputs:
    cfg = scenario.data
    data = market[cfg.symbol]
    full = FeatureInputs(data, data.bars, reference_bars_for(market, cfg.reference_symbol), market.funding.get(cfg.symbol))
    index = data.bars.index
    fit_rows = int(index.searchsorted(fit_end, side="right"))
    lo = max(0, fit_rows - warmup - BARS_BEFORE)
    hi = min(len(index), fit_rows + BARS_AFTER)
    return full.between(index[lo - 1] if lo > 0 else None, index[hi - 1])


def _cache_key(plugin: FeaturePlugin, digest: str, fit_end: pd.Timestamp) -> str:
    key = {
        "check": CHECK_VERSION,
        "window": [BARS_BEFORE, BARS_AFTER, CUTS, SEED],
        "plugin": plugin.name,
        "version": str(plugin.version),
        "params": plugin.params.model_dump(mode="json"),
        "code": _source_hash(type(plugin)),
        "data": digest,
        "fit_end": fit_end.isoformat(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _source_hash(cls: type) -> str:
    try:
        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()[:16]
    except (OSError, TypeError):  # no source file (defined interactively): version and params only
        return "-"


def _verdict(plugin: FeaturePlugin, report: CheckReport) -> dict[str, Any]:
    leaks = [
        {"feature": r.name, "bar": None if r.leak_bar is None else r.leak_bar.isoformat(), "message": describe_leak(r)}
        for r in report.results
        if not r.causal
    ]
    return {
        "version": str(plugin.version),
        "status": "failed" if leaks else "passed",
        "leaks": leaks,
        "parity_failures": [r.name for r in report.results if not r.parity_ok],
    }


def _read(path: Path) -> dict[str, Any] | None:
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return verdict | {"cached": True}


def _write(path: Path, verdict: dict[str, Any]) -> None:
    """Write atomically: a concurrent reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(verdict, fh, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
