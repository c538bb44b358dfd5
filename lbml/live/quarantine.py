"""The quarantine journal: ``STATE_DIR/quarantine.jsonl``, one line per message the feed guard refused.

Append-only JSON lines ``{"wall_ns", "reason", "detail", "raw"}``: the wall-clock time of the
refusal, the reason (``lbml.live.feed_guard.REASONS``), what was wrong, and the first
``journal_raw_bytes`` of the message as received (decoded as UTF-8, undecodable bytes replaced).
The file is the one record of quarantined messages: a restarted session and ``lbml report`` count
them from it. A line cut short by a crash is ignored.
"""

import json
from collections import Counter
from pathlib import Path

FILE_NAME = "quarantine.jsonl"


class QuarantineJournal:
    """Appends quarantined messages to ``state_dir/quarantine.jsonl``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE_NAME

    def append(self, reason: str, detail: str, raw: bytes, wall_ns: int) -> None:
        line = json.dumps({"wall_ns": wall_ns, "reason": reason, "detail": detail,
                           "raw": raw.decode("utf-8", errors="replace")}, ensure_ascii=True)
        with self.path.open("a", encoding="ascii") as f:
            f.write(line + "\n")

    def counts(self) -> dict[str, int]:
        """Quarantined messages by reason, as journaled so far."""
        return quarantine_counts(self.path.parent)


def quarantine_counts(state_dir: Path) -> dict[str, int]:
    """Count the quarantine journal of ``state_dir`` by reason (empty when there is none)."""
    path = Path(state_dir) / FILE_NAME
    counts: Counter[str] = Counter()
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        for line in f:
            try:
                counts[json.loads(line)["reason"]] += 1
            except (ValueError, KeyError, TypeError):  # a line cut short by a crash
                continue
    return dict(counts)
