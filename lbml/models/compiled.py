"""Compiled tree ensembles for the per-bar streaming path.

XGBoost's own single-row prediction costs ~150-300 µs per call here (``inplace_predict`` still pays
for its C++ dispatch and thread setup) with multi-millisecond tails on a busy machine. The per-bar
path needs one row at a time, so lbml turns the trees into straight-line C when a model is loaded,
builds it with the system C compiler and calls it through ``ctypes``: a few microseconds per row.

Why not treelite + tl2cgen: they were evaluated first. Their generated C prints leaf values with 8
significant digits, which moves 20-50 % of the probabilities by one float32 step; Kelly sizing then
rounds some order quantities differently, so backtest results changed. The code here is generated
from XGBoost's own JSON model (float32 constants written as exact hexadecimal literals) and adds the
trees in XGBoost's order (``base + tree_0 + tree_1 + ...`` in float32; a missing value follows its
split's default direction; then XGBoost's sigmoid with the C library's ``expf``), so probabilities
are bit-identical to ``predict_proba``.

The intercept needs care. XGBoost stores it as a probability ``p`` and turns it into a margin when
the model is loaded, ``-logf(1/p - 1)`` at run time with the C library's ``logf`` (after clamping
``p`` to ``[1e-6, 1 - 1e-6]``). A C compiler folds ``logf`` of a constant at compile time, correctly
rounded, and the C library's ``logf`` is not correctly rounded for every input: one float32 step
apart on some intercepts, which moved 1-5 % of the probabilities by 1-2 steps. The generated code
therefore reads ``p`` through a ``volatile`` and computes the margin once, at load time, with the
same ``logf`` XGBoost calls (``init``).

The library is cached by the SHA-256 of the generated source in a cache folder, never in the
repository. Before use, its predictions are checked against the booster on probe rows built from
the trees' own thresholds (both sides of every split, and missing values); any difference or build
failure falls back to the booster with one warning.
"""

import ctypes
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lbml.models.base import ModelPlugin
from lbml.native_build import CompileUnavailable, build_shared_library

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 0.0  # bit-identical to XGBoost on the probe rows, or not used at all
COMPILER_OPTIONS = ("-O1",)  # no -ffast-math: float32 additions must stay in source order
_CACHE_VERSION = "2"


class CompiledTrees:
    """A tree ensemble compiled to a shared library; ``predict_one`` is the fast single-row path.

    Parameters
    ----------
    library : Path
        Shared library built from :func:`generate_source`.
    n_features : int
        Number of input features the trees expect.
    """

    def __init__(self, library: Path, n_features: int) -> None:
        self.library = Path(library)
        self._lib = ctypes.CDLL(str(self.library))
        if self._lib.num_feature() != n_features:
            raise CompileUnavailable(f"{self.library}: built for {self._lib.num_feature()} features, not {n_features}")
        self.n_features = n_features
        self._lib.init.restype = None
        self._lib.init()  # the intercept's margin, with the C library's logf (see the module notes)
        self._predict = self._lib.predict
        self._predict.restype = ctypes.c_float
        # ``union {int missing; float fvalue;}`` per feature: float32 values, -1 marks missing.
        self._row = np.zeros(n_features, dtype=np.float32)
        self._row_bits = self._row.view(np.int32)
        self._row_ptr = ctypes.c_void_p(self._row.ctypes.data)

    def predict_one(self, x: np.ndarray) -> float:
        """Return P(class 1) for one feature row (NaN = missing, as in XGBoost)."""
        row = self._row
        row[:] = x  # float64 -> float32 rounding, exactly as XGBoost converts its input
        total = row.sum()
        if total != total:  # NaN present (or inf - inf): mark NaNs missing
            self._row_bits[np.isnan(row)] = -1
        return self._predict(self._row_ptr)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return P(class 1) for every row of ``X`` (row by row; for parity checks and tests)."""
        X = np.asarray(X, dtype=np.float64)
        return np.array([self.predict_one(row) for row in X], dtype=np.float64)


def generate_source(booster: Any) -> tuple[str, int]:
    """Return C source computing P(class 1) for a binary:logistic booster, and its feature count.

    Raises
    ------
    CompileUnavailable
        For other objectives or boosters, several base scores, or categorical splits.
    """
    learner = json.loads(bytes(booster.save_raw(raw_format="json")))["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise CompileUnavailable(f"compiled trees support binary:logistic, not {objective}")
    if learner["gradient_booster"]["name"] != "gbtree":
        raise CompileUnavailable(f"compiled trees need gbtree, not {learner['gradient_booster']['name']}")
    raw_base = learner["learner_model_param"]["base_score"]
    base = json.loads(raw_base) if raw_base.strip().startswith("[") else [float(raw_base)]
    if len(base) != 1:
        raise CompileUnavailable(f"expected one base score, got {raw_base}")
    n_features = int(learner["learner_model_param"]["num_feature"])
    lines = [
        "#include <math.h>",
        "typedef union { int missing; float fvalue; } Entry;",
        f"int num_feature(void) {{ return {n_features}; }}",
        "static float base_margin;",
        # XGBoost's LogisticRegression::ProbToMargin: clamp p to [kRtEps, 1 - kRtEps], then
        # Logit = -logf(1/p - 1) in float32, evaluated at run time (volatile: never folded).
        "void init(void) {",
        f"  volatile float stored = {_f32(base[0])};",
        "  float p = stored;",
        "  const float eps = 1e-6f;",
        "  p = p < eps ? eps : p;",
        "  p = p > 1.0f - eps ? 1.0f - eps : p;",
        "  base_margin = -logf(1.0f / p - 1.0f);",
        "}",
        "float predict(const Entry* x) {",
        "  float r = base_margin;",
    ]
    for i, tree in enumerate(learner["gradient_booster"]["model"]["trees"]):
        if any(int(t) != 0 for t in tree["split_type"]):
            raise CompileUnavailable(f"tree {i} has categorical splits")
        lines.append(f"  /* tree {i} */")
        _emit_node(tree, 0, "  ", lines)
    lines += [
        # XGBoost's common::Sigmoid in float32.
        "  float z = -r;",
        "  if (z > 88.7f) z = 88.7f;",
        "  return 1.0f / (expf(z) + 1.0f + 1e-16f);",
        "}",
    ]
    return "\n".join(lines) + "\n", n_features


def _f32(value: float) -> str:
    return f"{float(np.float32(value)).hex()}f"


def _emit_node(tree: dict, node: int, indent: str, lines: list[str]) -> None:
    left = tree["left_children"][node]
    if left == -1:  # a leaf keeps its value in split_conditions
        lines.append(f"{indent}r += {_f32(tree['split_conditions'][node])};")
        return
    f = int(tree["split_indices"][node])
    default_left = "1" if int(tree["default_left"][node]) else "0"
    threshold = _f32(tree["split_conditions"][node])
    lines.append(f"{indent}if (x[{f}].missing == -1 ? {default_left} : x[{f}].fvalue < {threshold}) {{")
    _emit_node(tree, left, indent + "  ", lines)
    lines.append(f"{indent}}} else {{")
    _emit_node(tree, tree["right_children"][node], indent + "  ", lines)
    lines.append(f"{indent}}}")


def compile_booster(booster: Any, cache_dir: Path | None = None, *, compiler: str = "cc") -> CompiledTrees:
    """Compile a booster (already restricted to the trees in use) or load it from the cache.

    Raises
    ------
    CompileUnavailable
        When the model is not supported, the C compiler is missing or the build fails.
    """
    source, n_features = generate_source(booster)
    library = build_shared_library(source, "predictor", (*COMPILER_OPTIONS, "-std=c99"), "compiled trees",
                                   cache_dir=cache_dir, compiler=compiler, version=_CACHE_VERSION)
    return CompiledTrees(library, n_features)


def probe_rows(booster: Any, n_features: int, seed: int = 0) -> np.ndarray:
    """Rows that exercise every split on both sides (thresholds, their float32 neighbours, NaN)."""
    values: list[list[float]] = [[] for _ in range(n_features)]
    for tree in booster.get_dump(dump_format="json"):
        _collect_thresholds(json.loads(tree), values)
    rng = np.random.default_rng(seed)
    columns = []
    for feature_values in values:
        thr = np.asarray(feature_values or [0.0], dtype=np.float32)
        near = np.concatenate([thr, np.nextafter(thr, np.float32(-np.inf)), np.nextafter(thr, np.float32(np.inf))])
        columns.append(near.astype(np.float64))
    n_rows = max(256, max(len(c) for c in columns))
    X = np.column_stack([rng.choice(c, size=n_rows) for c in columns])
    X[rng.random(X.shape) < 0.02] = np.nan
    return X


def _collect_thresholds(node: dict, values: list[list[float]]) -> None:
    if "split" in node:
        split = node["split"]
        index = int(split[1:]) if isinstance(split, str) and split.startswith("f") else int(split)
        values[index].append(float(node["split_condition"]))
        for child in node.get("children", ()):
            _collect_thresholds(child, values)


class CompiledModel(ModelPlugin):
    """A fitted model whose single-row path runs compiled trees; everything else is delegated.

    Built by :func:`accelerate`, never from a scenario.
    """

    name = "compiled"

    def __init__(self, model: ModelPlugin, trees: CompiledTrees) -> None:
        self.model = model
        self.trees = trees
        self.classes_ = model.classes_

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return self.model.get_params(deep=deep)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(X)

    def predict_up_one(self, x: np.ndarray) -> float:
        return self.trees.predict_one(x)

    def save(self, directory: Path) -> list[Path]:
        return self.model.save(directory)


def accelerate(model: ModelPlugin, cache_dir: Path | None = None, *, compiler: str = "cc") -> ModelPlugin:
    """Return ``model`` with a compiled single-row path when possible, else ``model`` unchanged.

    The model must expose ``tree_booster()`` (the XGBoost plugin does). The compiled trees are used
    only if they reproduce the model's ``predict_proba`` exactly on probe rows.
    """
    if isinstance(model, CompiledModel):
        return model
    with_base = getattr(model, "with_base", None)
    if with_base is not None:  # a wrapper (calibration): compile what it wraps, keep the wrapper
        inner = accelerate(model.base, cache_dir, compiler=compiler)
        return model if inner is model.base else with_base(inner)
    tree_booster = getattr(model, "tree_booster", None)
    if tree_booster is None:
        return model
    booster = tree_booster()
    try:
        trees = compile_booster(booster, cache_dir, compiler=compiler)
    except (CompileUnavailable, OSError) as exc:
        log.warning("compiled inference unavailable, using %s's own predictor: %s", model.name, exc)
        return model
    X = probe_rows(booster, trees.n_features)
    expected = model.predict_proba(X)[:, list(model.classes_).index(1)]
    worst = float(np.max(np.abs(trees.predict(X) - expected)))
    if not worst <= PARITY_TOLERANCE:
        log.warning("compiled trees differ from %s by %.3g: using the model's own predictor", model.name, worst)
        return model
    return CompiledModel(model, trees)
