"""Atomic output folders: written under a hidden temporary name, renamed into place when complete.

A crash or an error leaves no partial folder that looks complete. The temporary name carries the
writer's process id (``.NAME.partial-PID-XXXX``), so the next writer in the same folder removes the
partial folders of writers that no longer run (a ``kill -9`` leaves one behind).
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
    remove_stale_partials(final.parent)
    if not replace and final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final}: output folder already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{PARTIAL}{os.getpid()}-", dir=final.parent))
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


PARTIAL = ".partial-"


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete ``.NAME.partial-PID-*`` folders in ``folder`` whose writer process is gone; return them."""
    removed = []
    for path in folder.glob(f".*{PARTIAL}*"):
        pid_text = path.name.rsplit(PARTIAL, 1)[1].split("-", 1)[0]
        if path.is_dir() and pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _make_public(folder: Path) -> None:
    """Give a ``mkdtemp`` folder (mode 0700) the permissions of an ordinary folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
