"""Output destinations named on the command line, checked before any work starts.

A command that would fail only when it writes (after minutes of training) is refused at argument
time instead, in one line naming the option: ``--out`` on a file where a folder is wanted, on a
folder where a file is wanted, on a previous run (lbml never overwrites one), or under a parent that
is a file or not writable.
"""

import os
from pathlib import Path

from lbml.errors import ConfigError


def new_folder(path: str | Path, option: str) -> Path:
    """A folder that does not exist yet (a run or model folder: lbml never writes into an old one)."""
    path = Path(path)
    if path.is_file():
        raise ConfigError(f"{option} {path}: is a file, not a folder")
    if path.exists():
        raise ConfigError(f"{option} {path}: already exists (lbml never overwrites a run or model; name a new folder)")
    _writable_parent(path, option)
    return path


def folder(path: str | Path, option: str) -> Path:
    """A folder that may exist already (keys, generated data, a paper state to resume)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{option} {path}: folder is not writable")
        return path
    _writable_parent(path, option)
    return path


def file(path: str | Path, option: str) -> Path:
    """A file to write (replaced if it exists) in a folder that exists."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder, not a file")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: folder {parent} is not writable")
    return path


def _writable_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor must be a writable folder (the rest is created)."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{option} {path}: folder {parent} is not writable")
            return
