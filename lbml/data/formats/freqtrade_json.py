"""freqtrade's JSON candle files: a list of ``[ts_ms, open, high, low, close, volume]`` rows."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from lbml.data.frames import BAR_COLUMNS
from lbml.data.parsing import (
    Locator,
    Parsed,
    Source,
    bar_length_ns,
    build_bars,
    clip,
    is_number,
    ohlcv_columns,
    times,
)
from lbml.errors import DataError


def is_json(text: str) -> bool:
    """True when the file's first characters open a JSON document."""
    return text.lstrip()[:1] in "[{"


def parse_json(source: Source, bar_minutes: int | None) -> Parsed:
    try:
        rows = json.loads(source.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{source.path}: not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1:
            first = source.head().decode("utf-8-sig", errors="replace").split("\n", 1)[0]
            raise DataError(
                f"{source.path}: unrecognised format (JSON lines; first line: {clip(first)})"
            ) from None
        raise DataError(f"{source.path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(rows, list) or (rows and not isinstance(rows[0], list)):
        raise DataError(
            f"{source.path}: unrecognised JSON format (expected a list of [ts, o, h, l, c, v] rows)"
        )
    if not rows:
        raise DataError(f"{source.path}: file has no data rows")
    try:
        values = np.array(rows, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != 6:
            raise ValueError
    except (ValueError, TypeError):
        _diagnose_json_rows(source, rows)
        raise DataError(
            f"{source.path}: unrecognised JSON format (expected rows of 6 numbers)"
        ) from None
    table = pd.DataFrame(values, columns=["open_time", *BAR_COLUMNS])
    table["open_time"] = table["open_time"].astype(np.int64)
    loc = Locator(source, header=False, text=False)
    columns = ohlcv_columns(table, source, loc)
    open_ns = times(table, "open_time", source, loc)
    return build_bars(
        open_ns, bar_length_ns(open_ns, source, bar_minutes), columns, source, "freqtrade_json"
    )


def _diagnose_json_rows(source: Source, rows: list[Any]) -> None:
    names = ("open_time", *BAR_COLUMNS)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != 6:
            found = len(row) if isinstance(row, list) else type(row).__name__
            raise DataError(f"{source.path}: row {number}: expected 6 values, found {found}")
        for name, value in zip(names, row, strict=True):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not numeric and (isinstance(value, bool) or not is_number(str(value))):
                raise DataError(
                    f"{source.path}: row {number}: column '{name}' is not a number ({value!r})"
                )
