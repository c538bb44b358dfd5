"""The engine seam: outside ``lbml/nautilus/`` no project module imports ``nautilus_trader``
(docs/ENGINE.md §9), so that moving to another engine line is a port of that package.

The scan reads every Python file of the project's code folders (tests may import the engine
directly). ``benchmarks/bench_engines.py`` is the one exception: it benchmarks several engine
versions side by side (2.0rc included) and must import each one's own API.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("lbml", "plugins", "strategies", "scripts", "benchmarks")
SEAM = ROOT / "lbml" / "nautilus"
EXCEPTIONS = {ROOT / "benchmarks" / "bench_engines.py"}
ENGINE = "nautilus_trader"


def _is_engine(module: str | None) -> bool:
    return module is not None and (module == ENGINE or module.startswith(ENGINE + "."))


def engine_imports(source: str) -> list[tuple[int, str]]:
    """Return (line, module) of every import of the engine in ``source``: ``import``, ``from ...
    import`` (at any depth, lazy ones included) and ``importlib.import_module`` / ``__import__`` of a
    literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_engine(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_engine(node.module):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str) \
                    and _is_engine(node.args[0].value):
                found.append((node.lineno, node.args[0].value))
    return found


def _project_files() -> list[Path]:
    files = []
    for folder in SCANNED:
        base = ROOT / folder
        if base.is_dir():
            files += [p for p in sorted(base.rglob("*.py")) if ".venv" not in p.parts]
    return files


def test_only_the_seam_imports_the_engine():
    files = _project_files()
    assert len(files) > 50  # the scan sees the project, not an empty folder
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        if not path.is_relative_to(SEAM) and path not in EXCEPTIONS
        for line, module in engine_imports(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "import nautilus_trader only through lbml.nautilus:\n" + "\n".join(offenders)


def test_the_seam_and_the_exception_do_import_the_engine():
    # Guards the scan itself: files known to import the engine are found.
    for path in [SEAM / "backtest.py", SEAM / "live.py", *EXCEPTIONS]:
        assert engine_imports(path.read_text(encoding="utf-8")), path


@pytest.mark.parametrize("source", [
    "import nautilus_trader",
    "import nautilus_trader.model.data as d",
    "from nautilus_trader.config import StrategyConfig",
    "def f():\n    from nautilus_trader.core import nautilus_pyo3 as n\n",
    "import importlib\nimportlib.import_module('nautilus_trader.live.node')",
    "__import__('nautilus_trader')",
])
def test_the_scan_finds_every_form_of_engine_import(source):
    assert engine_imports(source)


@pytest.mark.parametrize("source", [
    "from lbml.nautilus.model import Bar",
    "import nautilus_trader_extra",
    "from . import nautilus_trader",
    "x = 'nautilus_trader'",
])
def test_the_scan_ignores_what_is_not_an_engine_import(source):
    assert not engine_imports(source)
