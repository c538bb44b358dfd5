"""User-facing errors.

Every error a user can cause (a bad scenario field, a malformed data file, a tampered model) is an
``LbmlError``. The CLI prints it as one line and exits with code 2; anything else is a bug and keeps
its traceback. Output that cannot be written for lack of space (a full disk, a quota, a file-size
limit) is a ``StorageError``: one line, exit code 4, and nothing partial left looking complete.
"""

import errno
import sqlite3


class LbmlError(Exception):
    """An error caused by user input; printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(LbmlError):
    """A settings or scenario file is invalid."""


class DataError(LbmlError):
    """A data file is missing, malformed or fails validation."""


class PluginError(LbmlError):
    """A plugin is unknown, fails to load, or breaks its contract."""


class ArtifactError(LbmlError):
    """A model artifact is missing, tampered with, or does not match the scenario."""


class StorageError(LbmlError):
    """Output could not be written for lack of space; printed as one line, exit code 4."""

    exit_code = 4


NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})  # full disk, file-size limit, quota
# SQLite's codes for a write the disk refused: SQLITE_FULL, and SQLITE_IOERR (how a file-size limit shows).
_SQLITE_NO_SPACE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR})


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for lack of space: an ``OSError``, an SQLite error, or a
    SQLAlchemy error wrapping one (in ``orig``)."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _SQLITE_NO_SPACE
    orig = getattr(exc, "orig", None)
    return isinstance(orig, BaseException) and orig is not exc and is_no_space(orig)


class InvariantError(Exception):
    """A guarantee lbml makes was broken while running (a bug, not a user error, e.g. a position
    above the exposure cap). The CLI prints it as one line and exits with code 3."""

    exit_code = 3
