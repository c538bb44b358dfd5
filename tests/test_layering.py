"""The shape of the package, read from the code's own imports.

Every module of ``lbml`` belongs to one layer of ``LAYERS`` (lowest first); a module may import
modules of its own layer and of the layers below it, never of a layer above. No two modules may
import each other, directly or through others. Imports are read with ``ast``, so imports inside
functions (the lazy ones that hide a circle from Python at import time) and under
``TYPE_CHECKING`` count as well. The README's architecture section draws the same table.
"""

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# (layer, module prefixes), lowest first. A module's layer is the one of its longest prefix; the
# bare "lbml" names the package's own __init__ only, so a new top-level module must be placed here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # errors, settings, the scenario, plugin machinery, the chronological split, the Dask sweep
    # executor, the C build of the native paths, and the nautilus seam (the only package that imports nautilus_trader)
    ("core", ("lbml", "lbml.errors", "lbml.atomic", "lbml.settings", "lbml.scenario", "lbml.hookspecs",
              "lbml.plugins", "lbml.outputs", "lbml.split", "lbml.sweeps", "lbml.native_build", "lbml.nautilus")),
    # what a trade costs and how big it may be: the one cost model, Kelly sizing, leverage terms
    ("pricing", ("lbml.cost_model", "lbml.sizing", "lbml.pricing", "lbml.leverage")),
    ("data", ("lbml.data",)),
    ("features", ("lbml.features",)),
    ("models", ("lbml.models",)),
    ("research", ("lbml.research",)),
    ("engine", ("lbml.engine", "lbml.signals")),
    ("report", ("lbml.report",)),
    ("workflows", ("lbml.workflows",)),
    ("live", ("lbml.live",)),
    ("cli", ("lbml.cli", "lbml.__main__")),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the ``lbml`` package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((root / "lbml").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Dotted names a module imports anywhere in its body, relative imports resolved."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Edges module → lbml module it imports (``from a.b import c`` → ``a.b.c`` if a module, else ``a.b``)."""
    modules = module_files(root)
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def layer_of(module: str) -> str | None:
    best, best_len = None, -1
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            inside = module == prefix or (prefix != "lbml" and module.startswith(prefix + "."))
            if inside and len(prefix) > best_len:
                best, best_len = layer, len(prefix)
    return best


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(a) is not None and layer_of(b) is not None  # an unplaced module fails the test above
        and RANK[layer_of(b)] > RANK[layer_of(a)]
    )


def test_every_module_has_a_layer():
    assert [m for m in module_files() if layer_of(m) is None] == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_no_import_against_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_reader_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "lbml"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from lbml.models import m\n")
    (pkg / "data" / "b.py").write_text("from . import a\nfrom .a import f\n")
    (pkg / "models").mkdir()
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "m.py").write_text("from lbml.data.b import f\n")
    graph = import_graph(tmp_path)
    assert graph["lbml.data.a"] == {"lbml.models.m"}  # inside a function, submodule named by `from`
    assert graph["lbml.data.b"] == {"lbml.data.a"}  # relative, both forms
    assert circles(graph) == [["lbml.data.a", "lbml.data.b", "lbml.models.m"]]
    assert upward_imports(graph) == ["lbml.data.a (data) imports lbml.models.m (models)"]


def test_format_families_stand_alone():
    # lbml.data.formats: each family parses with the shared helpers only; the importers choose among them
    graph = import_graph()
    families = [m for m in graph if m.startswith("lbml.data.formats")]
    assert len(families) >= 5  # the package and its four families
    for family in families:
        lbml_imports = {t for t in graph[family] if not t.startswith("lbml.nautilus.")}
        assert lbml_imports <= {"lbml.data.parsing", "lbml.data.frames", "lbml.errors"}, family
