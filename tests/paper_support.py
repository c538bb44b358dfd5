"""Helpers shared by the paper-trading tests."""

import os
import sqlite3
import sys
from pathlib import Path


def state_rows(state: Path, sql: str) -> list[tuple]:
    """Run ``sql`` read-only on a paper state folder's database."""
    db = sqlite3.connect(f"file:{Path(state) / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def run_cli(argv: list[str], out: str) -> None:
    """Run ``lbml`` in a forked child, stdout/stderr to ``out``; exits with the CLI's code."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from lbml.cli import main

    code = main(argv)
    sys.stdout.flush()
    os._exit(code)


def bars_done(state: Path) -> int:
    """Bars committed in a paper state folder (0 while it has no database yet)."""
    try:
        return state_rows(state, "SELECT COUNT(*) FROM equity")[0][0]
    except sqlite3.Error:
        return 0
