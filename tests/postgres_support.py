"""A real PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temp dir on a free loopback port.

PostgreSQL refuses to run as root: as root the server files belong to, and the commands run as, the
unprivileged ``postgres`` user (created by Debian's ``postgresql`` package) or ``nobody``. Every
command has a timeout and the server is stopped (and its folder removed) when the context ends.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TIMEOUT_S = 120


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return str(Path(found).resolve())
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[list[str], int | None, int | None]:
    """Command prefix, uid and gid to run the server with (nothing to change for a normal user)."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        runuser = shutil.which("runuser")  # util-linux: present wherever Debian's postgresql is
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        return [runuser, "-u", name, "--"], entry.pw_uid, entry.pw_gid
    pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _call(prefix: list[str], command: list[str]) -> None:
    command = prefix + command
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throw-away server; yield its SQLAlchemy URL (psycopg 3 driver, database ``postgres``)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: scripts/install-system-deps.sh test")
    prefix, uid, gid = _run_as()
    root = Path(tempfile.mkdtemp(prefix="lbml-pg-"))
    data = root / "data"
    if uid is not None:
        os.chown(root, uid, gid)
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off"
    started = False
    try:
        _call(prefix, [initdb, "-D", str(data), "-A", "trust", "-U", "lbml", "--no-sync", "-E", "UTF8"])
        _call(prefix, [pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"])
        started = True
        yield f"postgresql+psycopg://lbml@127.0.0.1:{port}/postgres"
    finally:
        if started:
            with contextlib.suppress(Exception):
                _call(prefix, [pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"])
        shutil.rmtree(root, ignore_errors=True)
