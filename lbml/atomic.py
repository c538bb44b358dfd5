"""Atomic output folders: written under a hidden temporary name, renamed into place when complete.

A crash or an error leaves no partial folder that looks complete.
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; rename it to ``final`` on success.

    On failure the temporary folder is deleted. ``replace`` allows overwriting an existing folder;
    without it, only an empty folder (a reservation, see ``lbml.report.runfolder.new_run_path``) may
    stand at ``final``, and a folder that another writer filled in the meantime is never deleted: the
    rename fails instead.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not replace and final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final}: output folder already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        _make_public(tmp)
        if replace and final.exists():
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)  # onto nothing or an empty folder; a non-empty one is refused
        except OSError:
            raise FileExistsError(f"{final}: output folder already exists (written by another run)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not replace:
            with contextlib.suppress(OSError):  # an empty reservation: nothing to keep (rmdir never deletes content)
                final.rmdir()
        raise


def _make_public(folder: Path) -> None:
    """Give a ``mkdtemp`` folder (mode 0700) the permissions of an ordinary folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
