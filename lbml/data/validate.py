"""Data-quality checks for imported market data.

:func:`validate` inspects a canonical frame (or an :class:`~lbml.data.importers.ImportedFile`)
and returns a :class:`ValidationReport` listing :class:`Finding` s. *Fatal* findings make the
data unusable for a backtest (unsorted or duplicate timestamps, impossible prices, NaN/inf);
*warnings* are worth knowing but survivable (gaps, zero-volume bars, crossed quotes).

Checks by kind:

- **bars**: unsorted, duplicate timestamps, NaN/inf, non-positive prices, negative volume,
  high < low, open/close outside [low, high] (fatal); gaps, off-grid timestamps, zero volume,
  taker-buy volume outside [0, volume], spikes (a high or low more than ``[data] max_bar_move``'s
  default factor away from the previous close) (warnings).
- **trades**: unsorted, NaN/inf, non-positive price or size, side not +1/-1 (fatal); spikes (a
  price more than the same factor away from the previous trade's) (warning).

Gaps and spikes are warnings here because a scenario may accept them (``[data] max_gap_minutes``,
``max_bar_move``); a backtest refuses them beyond the scenario's limits (``lbml.data.plausibility``).
- **quotes**: unsorted, NaN/inf, non-positive bid/ask, negative sizes (fatal); crossed book
  (warning).
- **funding**: unsorted, duplicate timestamps, NaN/inf (fatal).
- **depth**: unsorted, NaN/inf, negative depth (fatal); a side with no depth at all (warning).

All checks are vectorised; a 60k-bar file validates in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lbml.data.frames import BAR_COLUMNS, DEPTH_COLUMNS, FUNDING_COLUMNS, QUOTE_COLUMNS, TRADE_COLUMNS
from lbml.data.importers import ImportedFile
from lbml.data.plausibility import bar_moves
from lbml.scenario import DataConfig
from lbml.errors import DataError

FATAL = "fatal"
WARNING = "warning"
_NS_PER_MINUTE = 60 * 1_000_000_000
_PRICE_COLUMNS = ("open", "high", "low", "close")
#: The spike threshold: the backtest's default limit (``[data] max_bar_move``).
SPIKE_FACTOR: float = DataConfig.model_fields["max_bar_move"].default


@dataclass(frozen=True)
class Finding:
    """One data-quality problem.

    Attributes
    ----------
    check : str
        Short name of the check (``"duplicates"``, ``"gaps"``, ...).
    severity : str
        ``"fatal"`` or ``"warning"``.
    count : int
        Number of affected rows (for ``gaps``: number of missing bars).
    detail : str
        Human-readable description including the count.
    first_ts : pandas.Timestamp | None
        Timestamp of the first affected row (for ``gaps``: the first missing bar).
    first_row : int | None
        0-based position of the first affected row in the frame (for ``gaps``: the first bar
        after the first gap).
    """

    check: str
    severity: str
    count: int
    detail: str
    first_ts: pd.Timestamp | None = None
    first_row: int | None = None

    @property
    def message(self) -> str:
        """One-line description, e.g. ``3 duplicate timestamps (first at ..., row 7)``."""
        where = []
        if self.first_ts is not None:
            where.append(f"first at {self.first_ts}")
        if self.first_row is not None:
            where.append(f"row {self.first_row + 1}")
        return f"{self.detail} ({', '.join(where)})" if where else self.detail


@dataclass(frozen=True)
class ValidationReport:
    """Result of :func:`validate` for one frame.

    Attributes
    ----------
    source : str
        File path (or ``"<frame>"``) the data came from.
    kind : str
        ``"bars"``, ``"trades"``, ``"quotes"`` or ``"funding"``.
    rows : int
        Number of rows checked.
    start, end : pandas.Timestamp | None
        Smallest and largest timestamp.
    bar_minutes : int | None
        Bar length used for the gap check (bars only).
    findings : tuple[Finding, ...]
        Fatal findings first, then warnings.
    """

    source: str
    kind: str
    rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    bar_minutes: int | None
    findings: tuple[Finding, ...]

    @property
    def fatal(self) -> list[Finding]:
        """Findings that make the data unusable."""
        return [f for f in self.findings if f.severity == FATAL]

    @property
    def warnings(self) -> list[Finding]:
        """Findings worth reporting that do not block a backtest."""
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no fatal finding."""
        return not self.fatal

    def finding(self, check: str) -> Finding | None:
        """The finding of the named check, or None if that check passed."""
        return next((f for f in self.findings if f.check == check), None)

    def raise_if_fatal(self, path: str | Path | None = None) -> None:
        """Raise :class:`~lbml.errors.DataError` naming the file and the first fatal finding.

        Parameters
        ----------
        path : str | pathlib.Path | None
            Name to put in the message; defaults to :attr:`source`.

        Raises
        ------
        DataError
            One line, e.g. ``x.csv: 3 duplicate timestamps (first at 2021-04-02 00:05:00+00:00,
            row 6)``, when any finding is fatal.
        """
        fatal = self.fatal
        if not fatal:
            return
        more = (
            f" (+{len(fatal) - 1} more fatal problem{'s' if len(fatal) > 2 else ''})"
            if len(fatal) > 1
            else ""
        )
        raise DataError(f"{path if path is not None else self.source}: {fatal[0].message}{more}")

    def summary(self) -> str:
        """One-line summary: source, kind, rows, span and verdict."""
        span = f"{self.start} .. {self.end}" if self.start is not None else "no data"
        bar = f"  {self.bar_minutes}m" if self.bar_minutes else ""
        verdict = "FATAL" if self.fatal else "OK"
        counts = []
        if self.fatal:
            counts.append(_plural(len(self.fatal), "fatal problem"))
        if self.warnings:
            counts.append(_plural(len(self.warnings), "warning"))
        suffix = f" ({', '.join(counts)})" if counts else ""
        return f"{self.source}  {self.kind}  {self.rows:,} rows{bar}  {span}  {verdict}{suffix}"

    def to_table(self) -> str:
        """Readable text table: a summary line, then one line per finding."""
        lines = [self.summary()]
        if not self.findings:
            lines.append("  no problems found")
            return "\n".join(lines)
        header = ("severity", "check", "count", "first at", "row", "detail")
        rows = [
            (
                f.severity,
                f.check,
                f"{f.count:,}",
                "" if f.first_ts is None else str(f.first_ts),
                "" if f.first_row is None else str(f.first_row + 1),
                f.detail,
            )
            for f in self.findings
        ]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
        for row in (header, *rows):
            cells = [
                cell.rjust(w) if i in (2, 4) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=False))
            ]
            lines.append("  " + "  ".join(cells) + "  " + row[-1])
        return "\n".join(line.rstrip() for line in lines)


def format_reports(reports: Iterable[ValidationReport]) -> str:
    """Tables of several reports separated by blank lines (for ``lbml data validate``)."""
    return "\n\n".join(report.to_table() for report in reports)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def validate(
    data: ImportedFile | pd.DataFrame,
    *,
    kind: str | None = None,
    bar_minutes: int | None = None,
    source: str | None = None,
) -> ValidationReport:
    """Check a canonical frame for problems.

    Parameters
    ----------
    data : ImportedFile | pandas.DataFrame
        An imported file, or a canonical frame indexed by a ``DatetimeIndex``.
    kind : str | None
        ``"bars"``, ``"trades"``, ``"quotes"`` or ``"funding"``; taken from the
        :class:`ImportedFile` or inferred from the frame's columns when None.
    bar_minutes : int | None
        Bar length for the gap check; from the :class:`ImportedFile` or the median spacing
        of the timestamps when None.
    source : str | None
        Name for messages; defaults to the file path, or ``"<frame>"``.

    Returns
    -------
    ValidationReport
        All findings, fatal first.

    Raises
    ------
    DataError
        If the frame is not a canonical frame (no DatetimeIndex, unknown columns).
    """
    if isinstance(data, ImportedFile):
        frame = data.frame
        kind = kind or data.kind
        bar_minutes = bar_minutes or data.bar_minutes
        source = source or str(data.path)
    else:
        frame = data
        source = source or "<frame>"
        kind = kind or _infer_kind(frame, source)
    _check_shape(frame, kind, source)
    ts = _ns(frame.index)
    if kind == "bars" and bar_minutes is None:
        bar_minutes = _infer_bar_minutes(ts)
    findings = _CHECKS[kind](frame, ts, bar_minutes)
    findings.sort(key=lambda f: f.severity != FATAL)  # stable: fatal first, check order kept
    return ValidationReport(
        source=source,
        kind=kind,
        rows=len(frame),
        start=pd.Timestamp(int(ts.min()), tz="UTC") if len(ts) else None,
        end=pd.Timestamp(int(ts.max()), tz="UTC") if len(ts) else None,
        bar_minutes=bar_minutes if kind == "bars" else None,
        findings=tuple(findings),
    )


def _infer_kind(frame: pd.DataFrame, source: str) -> str:
    columns = set(frame.columns)
    for kind, needed in (
        ("bars", BAR_COLUMNS),
        ("trades", TRADE_COLUMNS),
        ("quotes", QUOTE_COLUMNS),
        ("funding", FUNDING_COLUMNS),
        ("depth", DEPTH_COLUMNS),
    ):
        if set(needed) <= columns:
            return kind
    raise DataError(
        f"{source}: cannot tell the kind of data from columns {sorted(map(str, columns))}"
    )


_REQUIRED = {
    "bars": BAR_COLUMNS,
    "trades": TRADE_COLUMNS,
    "quotes": QUOTE_COLUMNS,
    "funding": FUNDING_COLUMNS,
    "depth": DEPTH_COLUMNS,
}


def _check_shape(frame: pd.DataFrame, kind: str, source: str) -> None:
    if kind not in _REQUIRED:
        raise DataError(f"{source}: unknown data kind {kind!r}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"{source}: frame is not indexed by timestamps")
    missing = [c for c in _REQUIRED[kind] if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: {kind} frame lacks column(s) {', '.join(missing)}")


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("ns").asi8


def _infer_bar_minutes(ts: np.ndarray) -> int | None:
    steps = np.diff(ts)
    steps = steps[steps > 0]
    if len(steps) == 0:
        return None
    median = int(np.median(steps))
    if median % _NS_PER_MINUTE:
        return None
    return median // _NS_PER_MINUTE


# --------------------------------------------------------------------------------------------
# Individual checks
# --------------------------------------------------------------------------------------------


def _flag(
    check: str, severity: str, mask: np.ndarray, ts: np.ndarray, detail: str
) -> list[Finding]:
    """A one-element list with the finding for ``mask``, or empty when nothing is flagged."""
    count = int(np.count_nonzero(mask))
    if count == 0:
        return []
    row = int(np.argmax(mask))
    first = pd.Timestamp(int(ts[row]), tz="UTC")
    return [
        Finding(
            check,
            severity,
            count,
            detail.format(n=f"{count:,}", s="" if count == 1 else "s"),
            first,
            row,
        )
    ]


def _values(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    return frame.loc[:, list(columns)].to_numpy(dtype=np.float64)


def _common_checks(
    frame: pd.DataFrame, ts: np.ndarray, columns: Sequence[str], unit: str
) -> list[Finding]:
    """Empty frame, non-finite values and unsorted timestamps (every kind)."""
    if len(frame) == 0:
        return [Finding("empty", FATAL, 0, "no data rows")]
    values = _values(frame, columns)
    non_finite = ~np.isfinite(values).all(axis=1)
    bad_columns = [
        c for c, bad in zip(columns, ~np.isfinite(values).all(axis=0), strict=True) if bad
    ]
    findings = _flag(
        "nan",
        FATAL,
        non_finite,
        ts,
        f"{{n}} {unit}{{s}} with NaN or infinite values ({', '.join(bad_columns)})",
    )
    earlier = np.zeros(len(ts), dtype=bool)
    earlier[1:] = ts[1:] < ts[:-1]
    findings += _flag(
        "unsorted", FATAL, earlier, ts, "{n} timestamp{s} earlier than the row before"
    )
    return findings


def _duplicates(ts: np.ndarray) -> np.ndarray:
    return pd.Index(ts).duplicated(keep="first")


def _check_bars(frame: pd.DataFrame, ts: np.ndarray, bar_minutes: int | None) -> list[Finding]:
    columns = [*BAR_COLUMNS, *(["taker_buy_volume"] if "taker_buy_volume" in frame.columns else [])]
    findings = _common_checks(frame, ts, columns, "bar")
    if len(frame) == 0:
        return findings
    o, h, lo, c, v = (frame[col].to_numpy(dtype=np.float64) for col in BAR_COLUMNS)
    findings += _flag("duplicates", FATAL, _duplicates(ts), ts, "{n} duplicate timestamp{s}")
    prices = _values(frame, _PRICE_COLUMNS)
    findings += _flag("price", FATAL, (prices <= 0).any(axis=1), ts, "{n} bar{s} with a price <= 0")
    findings += _flag("volume", FATAL, v < 0, ts, "{n} bar{s} with negative volume")
    findings += _flag("high_low", FATAL, h < lo, ts, "{n} bar{s} with high < low")
    outside = (o < lo) | (o > h) | (c < lo) | (c > h)
    findings += _flag(
        "ohlc", FATAL, outside & (h >= lo), ts, "{n} bar{s} with open or close outside [low, high]"
    )
    if bar_minutes:
        findings += _gap_findings(ts, bar_minutes)
    findings += _flag("zero_volume", WARNING, v == 0, ts, "{n} bar{s} with zero volume")
    findings += _flag(
        "spike", WARNING, bar_moves(frame) > SPIKE_FACTOR, ts,
        f"{{n}} bar{{s}} moving more than {SPIKE_FACTOR:g}x from the previous close (a bad print?)",
    )
    if "taker_buy_volume" in frame.columns:
        taker = frame["taker_buy_volume"].to_numpy(dtype=np.float64)
        bad_taker = (taker < 0) | (taker > v * (1 + 1e-9) + 1e-12)
        findings += _flag(
            "taker_buy",
            WARNING,
            bad_taker,
            ts,
            "{n} bar{s} with taker_buy_volume outside [0, volume]",
        )
    return findings


def find_gaps(index: pd.DatetimeIndex | np.ndarray, bar_minutes: int) -> pd.DataFrame:
    """Runs of missing bars in a bar index.

    Parameters
    ----------
    index : pandas.DatetimeIndex | numpy.ndarray
        Bar close times (any order; duplicates are ignored), or int64 nanoseconds.
    bar_minutes : int
        Bar length.

    Returns
    -------
    pandas.DataFrame
        One row per gap, in time order: ``before`` (last bar before the gap), ``after``
        (first bar after it) and ``missing`` (number of absent bars).
    """
    ts = _ns(index) if isinstance(index, pd.DatetimeIndex) else np.asarray(index, dtype=np.int64)
    bar_ns = bar_minutes * _NS_PER_MINUTE
    unique = np.unique(ts)
    steps = np.diff(unique)
    missing = steps // bar_ns - 1
    where = np.flatnonzero(missing > 0)
    return pd.DataFrame(
        {
            "before": pd.to_datetime(unique[where], utc=True),
            "after": pd.to_datetime(unique[where + 1], utc=True),
            "missing": missing[where].astype(np.int64),
        }
    )


def _gap_findings(ts: np.ndarray, bar_minutes: int) -> list[Finding]:
    findings: list[Finding] = []
    gaps = find_gaps(ts, bar_minutes)
    bar = pd.Timedelta(minutes=bar_minutes)
    if len(gaps):
        total = int(gaps["missing"].sum())
        big = gaps.loc[gaps["missing"].idxmax()]
        first_missing = gaps["before"].iloc[0] + bar
        row = int(np.argmax(ts == gaps["after"].iloc[0].value))
        detail = (
            f"{total:,} missing bar{'' if total == 1 else 's'} in {_plural(len(gaps), 'gap')} "
            f"(largest: {int(big['missing'])} bars, {big['before'] + bar} to {big['after'] - bar})"
        )
        findings.append(Finding("gaps", WARNING, total, detail, first_missing, row))
    off_grid = (ts % (bar_minutes * _NS_PER_MINUTE)) != 0
    findings += _flag(
        "off_grid", WARNING, off_grid, ts, f"{{n}} timestamp{{s}} off the {bar_minutes}-minute grid"
    )
    return findings


def _check_trades(frame: pd.DataFrame, ts: np.ndarray, _: int | None) -> list[Finding]:
    findings = _common_checks(frame, ts, ("price", "size"), "trade")
    if len(frame) == 0:
        return findings
    price = frame["price"].to_numpy(dtype=np.float64)
    size = frame["size"].to_numpy(dtype=np.float64)
    side = frame["side"].to_numpy()
    findings += _flag("price", FATAL, price <= 0, ts, "{n} trade{s} with a price <= 0")
    findings += _flag("size", FATAL, size <= 0, ts, "{n} trade{s} with a size <= 0")
    findings += _flag(
        "side", FATAL, (side != 1) & (side != -1), ts, "{n} trade{s} with a side other than +1/-1"
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.r_[1.0, price[1:] / price[:-1]]
    jump = (ratio > SPIKE_FACTOR) | (ratio < 1 / SPIKE_FACTOR)
    findings += _flag(
        "spike", WARNING, jump, ts, f"{{n}} trade{{s}} more than {SPIKE_FACTOR:g}x away from the previous trade's price"
    )
    return findings


def _check_quotes(frame: pd.DataFrame, ts: np.ndarray, _: int | None) -> list[Finding]:
    findings = _common_checks(frame, ts, QUOTE_COLUMNS, "quote")
    if len(frame) == 0:
        return findings
    bid, ask, bid_size, ask_size = (frame[c].to_numpy(dtype=np.float64) for c in QUOTE_COLUMNS)
    findings += _flag(
        "price", FATAL, (bid <= 0) | (ask <= 0), ts, "{n} quote{s} with a bid or ask <= 0"
    )
    findings += _flag(
        "size", FATAL, (bid_size < 0) | (ask_size < 0), ts, "{n} quote{s} with a negative size"
    )
    findings += _flag("crossed", WARNING, bid > ask, ts, "{n} crossed quote{s} (bid > ask)")
    return findings


def _check_funding(frame: pd.DataFrame, ts: np.ndarray, _: int | None) -> list[Finding]:
    findings = _common_checks(frame, ts, FUNDING_COLUMNS, "rate")
    if len(frame) == 0:
        return findings
    findings += _flag("duplicates", FATAL, _duplicates(ts), ts, "{n} duplicate timestamp{s}")
    return findings


def _check_depth(frame: pd.DataFrame, ts: np.ndarray, _: int | None) -> list[Finding]:
    findings = _common_checks(frame, ts, DEPTH_COLUMNS, "snapshot")
    if len(frame) == 0:
        return findings
    bid, ask = (frame[c].to_numpy(dtype=np.float64) for c in DEPTH_COLUMNS)
    findings += _flag(
        "size", FATAL, (bid < 0) | (ask < 0), ts, "{n} snapshot{s} with a negative depth"
    )
    findings += _flag(
        "one_sided", WARNING, (bid == 0) | (ask == 0), ts, "{n} snapshot{s} with an empty book side"
    )
    return findings


_CHECKS = {
    "bars": _check_bars,
    "trades": _check_trades,
    "quotes": _check_quotes,
    "funding": _check_funding,
    "depth": _check_depth,
}
