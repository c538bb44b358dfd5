"""What data a run used: source, files, symbols, time range, rows and a content hash per series.

Every summary (``backtest``, ``train``, ``demo``, ``paper``) prints it and ``metrics.json`` records
it under ``data``, so a run on the synthetic market can never pass for a run on real data.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from lbml.data.frames import MarketData
from lbml.scenario import DataConfig


def content_hash(frame: pd.DataFrame | None) -> str | None:
    """SHA-256 (16 hex digits) of a frame's index and values, or None for no frame."""
    if frame is None:
        return None
    hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def describe_market(config: DataConfig, market: MarketData) -> dict[str, Any]:
    """Describe the loaded market (JSON-ready), traded symbol first."""
    if config.source == "synthetic":
        origin = (f"embedded synthetic market (seed {config.seed}, {config.days} days, edge {config.edge:g}, "
                  f"trend drift {config.trend_drift:g})")
    else:
        origin = "files"
    roles = {config.symbol: ("traded", config.paths + config.depth_paths)}
    if config.reference_symbol:
        roles.setdefault(config.reference_symbol, ("reference", config.reference_paths))
    instruments = []
    for symbol, (role, paths) in roles.items():
        if symbol not in market:
            continue
        data = market[symbol]
        main = data.trades if data.has_ticks else data.bars
        instruments.append({
            "symbol": symbol,
            "role": role,
            "files": [str(p) for p in paths],
            "start": str(main.index[0]) if len(main) else None,
            "end": str(main.index[-1]) if len(main) else None,
            "bars": 0 if data.bars is None else len(data.bars),
            "trades": 0 if data.trades is None else len(data.trades),
            "quotes": 0 if data.quotes is None else len(data.quotes),
            "hash": _combined_hash(data.bars, data.trades, data.quotes, data.depth),
        })
    funding = [
        {"symbol": symbol, "rows": len(frame), "start": str(frame.index[0]) if len(frame) else None,
         "end": str(frame.index[-1]) if len(frame) else None, "hash": content_hash(frame)}
        for symbol, frame in market.funding.items()
    ]
    return {
        "source": config.source,
        "origin": origin,
        "bar_minutes": market.bar_minutes,
        "instruments": instruments,
        "funding": funding,
        "funding_files": [str(p) for p in config.funding_paths],
    }


def _combined_hash(*frames: pd.DataFrame | None) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update((content_hash(frame) or "-").encode())
    return digest.hexdigest()[:16]


def summary_lines(description: dict[str, Any]) -> list[str]:
    """One line per series: ``SOURCE SYMBOL (role) START .. END, ROWS, hash H, FILES``."""
    lines = []
    for item in description["instruments"]:
        rows = f"{item['bars']:,} bars" + (f", {item['trades']:,} trades" if item["trades"] else "")
        where = ", ".join(item["files"]) if item["files"] else description["origin"]
        lines.append(f"{description['source']} {item['symbol']} ({item['role']}) {item['start']} .. {item['end']}, "
                     f"{rows}, hash {item['hash']}, from {where}")
    for item in description["funding"]:
        where = ", ".join(description["funding_files"]) or description["origin"]
        lines.append(f"{description['source']} {item['symbol']} funding {item['start']} .. {item['end']}, "
                     f"{item['rows']:,} rates, hash {item['hash']}, from {where}")
    return lines
