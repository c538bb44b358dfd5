"""User-facing errors.

Every error a user can cause (a bad scenario field, a malformed data file, a tampered model) is an
``LbmlError``. The CLI prints it as one line and exits with code 2; anything else is a bug and keeps
its traceback. Output that cannot be written for lack of space (a full disk, a quota, a file-size
limit) is a ``StorageError``: one line, exit code 4, and nothing partial left looking complete.
"""

import errno


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


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for lack of space."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


class InvariantError(Exception):
    """A guarantee lbml makes was broken while running (a bug, not a user error, e.g. a position
    above the exposure cap). The CLI prints it as one line and exits with code 3."""

    exit_code = 3
