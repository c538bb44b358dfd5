"""Model artifacts: native model files plus a JSON manifest, never pickle.

An artifact folder holds the model plugin's native files, ``feature_state.json`` (parameters the
feature plugins learned on the training window) and ``manifest.json``: plugin name and
hyperparameters, feature schema and hash, label spec, training window, data hash, library versions,
training metrics and the SHA-256 of every file. Loading verifies every hash and refuses an artifact
whose feature schema differs from the scenario's.

The manifest's own content is covered too: its ``integrity`` block holds the SHA-256 of the
canonical JSON of every other top-level field (whatever the fields are: new ones are covered
without a list to update) and a digest over those, so an edited window, schema, calibration, EV
margin or statistic is refused like a modified file. Without a secret key this is tamper-evident,
not authentication: it catches edits and corruption, but someone who edits a field and
recomputes the digests with this module's public recipe is not stopped.
"""

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from lbml.atomic import atomic_folder
from lbml.errors import ArtifactError
from lbml.features.pipeline import FeatureSchema
from lbml.models.base import ModelPlugin
from lbml.plugins import PluginRegistry

MANIFEST = "manifest.json"
FEATURE_STATE = "feature_state.json"
INTEGRITY = "integrity"
#: 2: the manifest carries an ``integrity`` block over all its fields (format 1 had none).
FORMAT_VERSION = 2
_LIBRARIES = ("lbml", "nautilus_trader", "xgboost-cpu", "scikit-learn", "skops", "numpy", "pandas", "scipy")


@dataclass(frozen=True)
class TrainingWindow:
    start: pd.Timestamp
    end: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class LoadedArtifact:
    model: ModelPlugin
    manifest: dict[str, Any]
    feature_state: dict[str, Any]
    path: Path

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def ev_margin(self) -> float:
        """Probability margin above break-even chosen on out-of-fold predictions (0 if none)."""
        return float(self.manifest.get("metrics", {}).get("ev_margin") or 0.0)

    @property
    def pricing(self):
        """How the model's training priced a trade (``lbml.pricing.Pricing``): payoff, funding, volatility."""
        from lbml.pricing import Pricing

        raw = self.manifest.get("metrics", {}).get("pricing")
        if raw is None:
            raise ArtifactError(
                f"{self.path}: model has no trade pricing (trained by an older lbml): retrain it with `lbml train`"
            )
        return Pricing.from_dict(raw)

    @property
    def training_window(self) -> TrainingWindow:
        w = self.manifest["training_window"]
        return TrainingWindow(pd.Timestamp(w["start"]), pd.Timestamp(w["end"]))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_integrity(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the ``integrity`` block of ``manifest``: a digest per top-level field and one over them.

    Covers every field except ``integrity`` itself, in the form the loader reads (parsed JSON).
    """
    fields = {key: _canonical_sha256(value) for key, value in manifest.items() if key != INTEGRITY}
    return {"algorithm": "sha256/canonical-json", "fields": fields, "digest": _canonical_sha256(fields)}


def verify_manifest(manifest: dict[str, Any], source: Path) -> None:
    """Raise ``ArtifactError`` unless ``manifest`` matches its ``integrity`` block exactly."""
    stored = manifest.get(INTEGRITY)
    if not isinstance(stored, dict) or not isinstance(stored.get("fields"), dict):
        raise ArtifactError(f"{source}: manifest has no integrity block (edited, or not written by lbml)")
    actual = manifest_integrity(manifest)
    have, want = actual["fields"], stored["fields"]
    changed = sorted(key for key in have.keys() | want.keys() if have.get(key) != want.get(key))
    if changed:
        raise ArtifactError(
            f"{source}: manifest field {', '.join(changed)} does not match its integrity digest (manifest edited)"
        )
    if stored != actual:
        raise ArtifactError(f"{source}: manifest integrity block does not match its fields (manifest edited)")


def save_artifact(
    out_dir: Path,
    *,
    model: ModelPlugin,
    schema: FeatureSchema,
    feature_state: dict[str, Any],
    label_spec: dict[str, Any],
    training_window: TrainingWindow,
    data_hash: str,
    scenario_hash: str,
    metrics: dict[str, Any],
    calibrator: Any | None = None,
) -> Path:
    """Write an artifact atomically (a temporary folder renamed into place); return its path."""
    out_dir = Path(out_dir)
    with atomic_folder(out_dir, replace=True) as tmp:
        files = model.save(tmp)
        state_path = tmp / FEATURE_STATE
        state_path.write_text(json.dumps(feature_state, indent=2, sort_keys=True))
        files.append(state_path)
        if calibrator is not None:
            files.append(calibrator.save(tmp))
        hashes = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}
        model_id = hashlib.sha256("".join(sorted(hashes.values())).encode()).hexdigest()[:12]
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_id": model_id,
            "model_plugin": model.name,
            "model_params": model.get_params(),
            "feature_schema": schema.to_dict(),
            "label_spec": label_spec,
            "training_window": training_window.to_dict(),
            "data_hash": data_hash,
            "scenario_hash": scenario_hash,
            "libraries": {lib: _version(lib) for lib in _LIBRARIES},
            "metrics": metrics,
            "calibration": calibrator.to_dict() if calibrator is not None else None,
            "files": hashes,
        }
        manifest = json.loads(json.dumps(manifest, default=str))  # the form load_artifact reads back
        manifest[INTEGRITY] = manifest_integrity(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out_dir


def load_artifact(
    path: Path, registry: PluginRegistry, expected_schema: FeatureSchema | None = None
) -> LoadedArtifact:
    """Load and verify an artifact; raise ``ArtifactError`` on any mismatch or tampering."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{path}: not a model artifact (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{manifest_path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path}: corrupt manifest (not a JSON object)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: unsupported artifact format {manifest.get('format_version')} "
            f"(this lbml reads format {FORMAT_VERSION}: retrain the model)"
        )
    verify_manifest(manifest, manifest_path)
    try:
        files: dict[str, str] = manifest["files"]
        plugin_name = manifest["model_plugin"]
        params = manifest["model_params"]
        schema_hash = manifest["feature_schema"]["hash"]
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{manifest_path}: corrupt manifest ({exc})") from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{file}: listed in the manifest but missing")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file}: SHA-256 does not match the manifest (file modified)")
    if expected_schema is not None and expected_schema.hash != schema_hash:
        have = manifest["feature_schema"]["names"]
        want = list(expected_schema.names)
        diff = sorted(set(have) ^ set(want))
        detail = f"differing features: {', '.join(diff[:5])}" if diff else "same names, different plugin parameters or order"
        raise ArtifactError(
            f"{path}: feature schema {schema_hash} does not match the scenario's {expected_schema.hash} ({detail})"
        )
    model = registry.model(plugin_name).load(path, params)
    if manifest.get("calibration") is not None:
        from lbml.models.calibration import CalibratedModel, Calibrator

        model = CalibratedModel(model, Calibrator.load(path))
    feature_state = json.loads((path / FEATURE_STATE).read_text())
    return LoadedArtifact(model=model, manifest=manifest, feature_state=feature_state, path=path)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except Exception:  # noqa: BLE001 - a missing optional distribution is just "unknown"
        return "unknown"
