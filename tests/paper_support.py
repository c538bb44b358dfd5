"""Helpers shared by the paper-trading tests."""

import sqlite3
from pathlib import Path


def state_rows(state: Path, sql: str) -> list[tuple]:
    """Run ``sql`` read-only on a paper state folder's database."""
    db = sqlite3.connect(f"file:{Path(state) / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()
