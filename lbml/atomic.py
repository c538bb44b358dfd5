"""Atomic output folders and files: written under a hidden temporary name, renamed into place when
complete.

A crash or an error (a full disk) leaves no partial folder or file that looks complete. A temporary
folder's name carries the writer's process id (``.NAME.partial-PID-XXXX``), so the next writer in the
same folder removes the partial folders of writers that no longer run (a ``kill -9`` leaves one
behind).
"""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lbml.errors import StorageError, is_no_space


@contextmanager
def atomic_folder(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; rename it to ``final`` on success.

    On failure the temporary folder is deleted; a write refused for lack of space (a full disk, a
    file-size limit) becomes one ``StorageError`` naming ``final``. ``replace`` allows overwriting an
    existing folder; without it, only an empty folder (a reservation, see ``lbml.report.runfolder.new_run_path``) may
    stand at ``final``, and a folder that another writer filled in the meantime is never deleted: the
    rename fails instead.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final.parent)
    if not replace and final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(f"{final}: output folder already exists")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{PARTIAL}{os.getpid()}-", dir=final.parent))
    except OSError as exc:
        if is_no_space(exc):
            raise StorageError(f"{final}: cannot create the output folder ({exc.strerror})") from None
        raise
    try:
        try:
            yield tmp
        except OSError as exc:
            if is_no_space(exc):  # a full disk mid-write: one line; the partial folder goes below
                raise StorageError(f"{final}: writing the output failed ({exc.strerror}); nothing was kept") from None
            raise
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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` at once: a reader sees the old file or the new one, never half of
    one; on failure (a full disk) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        _make_public_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _make_public_file(path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the permissions of an ordinary file."""
    os.chmod(path, 0o666 & ~_umask())


def _make_public(folder: Path) -> None:
    """Give a ``mkdtemp`` folder (mode 0700) the permissions of an ordinary folder."""
    os.chmod(folder, 0o777 & ~_umask())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
