"""Building generated C into a cached shared library: the one build routine of lbml's native paths.

Both native paths, the compiled trees (``lbml.models.compiled``) and the compiled feature kernels
(``lbml.features.native``), are C that lbml writes itself and the system C compiler builds at first
use into a per-user cache, loaded with ``ctypes``. No build step at install time, and no compiler
is no failure: the caller falls back to its Python reference when this raises ``CompileUnavailable``.

The library's name in the cache is a hash of the source and the compiler options, so a changed
source never loads a stale build; it is written under a process-private name and renamed into
place, so concurrent builders and loaders never see a half-written library.
"""

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class CompileUnavailable(RuntimeError):
    """A compiled path cannot be used here (unsupported input, no compiler, build error)."""


def default_cache_dir() -> Path:
    """Return the per-user cache folder for compiled code (``$XDG_CACHE_HOME/lbml/compiled``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lbml" / "compiled"


def build_shared_library(source: str, name: str, options: Sequence[str], what: str, *,
                         cache_dir: Path | None = None, compiler: str = "cc", version: str = "") -> Path:
    """Compile ``source`` (or find it in the cache) and return the shared library's path.

    Parameters
    ----------
    source
        The C source.
    name
        The library's file stem and its cache folder's prefix.
    options
        Compiler options before ``-shared -fPIC`` (optimisation and floating-point flags).
    what
        What is built, for the error message (``"compiled trees"``).
    cache_dir, compiler, version
        The cache folder (default ``default_cache_dir()``), the C compiler, and a version string
        mixed into the cache key.

    Raises
    ------
    CompileUnavailable
        When the C compiler is missing or the build fails.
    """
    key = hashlib.sha256(json.dumps([version, list(options), source]).encode()).hexdigest()[:24]
    folder = Path(cache_dir or default_cache_dir()) / f"{name}-{key}"
    library = folder / f"{name}.so"
    if library.is_file():
        return library
    if shutil.which(compiler) is None:
        raise CompileUnavailable(f"C compiler {compiler!r} not found")
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"{name}.{os.getpid()}.c"
    tmp_lib = folder / f"{name}.{os.getpid()}.so"
    src.write_text(source)
    try:
        proc = subprocess.run([compiler, *options, "-shared", "-fPIC", "-o", str(tmp_lib), str(src), "-lm"],
                              capture_output=True, text=True)
    finally:
        src.unlink(missing_ok=True)
    if proc.returncode != 0:
        tmp_lib.unlink(missing_ok=True)
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompileUnavailable(f"building {what} failed: {detail}")
    os.replace(tmp_lib, library)  # atomic: concurrent loaders never see a half-written library
    return library
