"""Atomic output folders: written under a hidden temporary name, renamed into place when complete.

A crash or an error leaves no partial folder that looks complete.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; rename it to ``final`` on success.

    On failure the temporary folder is deleted. ``replace`` allows overwriting an existing folder.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not replace:
        raise FileExistsError(f"{final}: output folder already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        _make_public(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_public(folder: Path) -> None:
    """Give a ``mkdtemp`` folder (mode 0700) the permissions of an ordinary folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
