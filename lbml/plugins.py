"""Plugin manager factory and the registry of what plugins provide."""

import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from lbml import hookspecs
from lbml.errors import PluginError

ENTRY_POINT_GROUP = "lbml"


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin module and where it came from."""

    name: str
    origin: str  # "entry point <dist> (<module>)" or "local <path>"
    features: tuple[str, ...]
    models: tuple[str, ...]
    data_sources: tuple[str, ...]


class LbmlPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.origins: dict[str, str] = {}


def make_plugin_manager(plugins_dir: Path | None = None) -> LbmlPluginManager:
    """Build a fresh plugin manager with entry-point plugins and the local plugins folder."""
    pm = LbmlPluginManager()
    pm.add_hookspecs(hookspecs)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must name itself
            raise PluginError(f"plugin entry point {ep.name} ({ep.value}): failed to load: {exc}") from None
        dist = ep.dist.name if ep.dist is not None else "?"
        pm.register(module, name=ep.name)
        pm.origins[ep.name] = f"entry point of {dist} ({ep.value})"
    if plugins_dir is not None:
        for path in sorted(Path(plugins_dir).glob("*.py")):
            if path.name.startswith("_"):
                continue
            module = _import_local(path)
            pm.register(module, name=f"local:{path.stem}")
            pm.origins[f"local:{path.stem}"] = f"local file {path}"
    return pm


def _import_local(path: Path) -> ModuleType:
    name = f"lbml_local_plugins.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot import local plugin")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PluginError(f"{path}: local plugin failed to import: {exc}") from None
    sys.modules[name] = module
    return module


class PluginRegistry:
    """Name → class lookups over everything the registered plugins provide."""

    def __init__(self, pm: LbmlPluginManager) -> None:
        self.pm = pm
        self.features = self._collect("lbml_register_features", "feature")
        self.models = self._collect("lbml_register_models", "model")
        self.data_sources = self._collect("lbml_register_data_sources", "data source")

    def _collect(self, hook_name: str, kind: str) -> dict[str, type]:
        found: dict[str, type] = {}
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            for cls in impl.function() or []:
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {impl.plugin_name}: {kind} class {cls!r} has no name")
                if name in found and found[name] is not cls:
                    raise PluginError(
                        f"plugin {impl.plugin_name}: {kind} name {name!r} is already registered"
                    )
                found[name] = cls
        return found

    def feature(self, name: str) -> type:
        return self._lookup(self.features, name, "feature plugin")

    def model(self, name: str) -> type:
        return self._lookup(self.models, name, "model plugin")

    def data_source(self, name: str) -> type:
        return self._lookup(self.data_sources, name, "data source")

    @staticmethod
    def _lookup(table: dict[str, type], name: str, kind: str) -> type:
        try:
            return table[name]
        except KeyError:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(f"unknown {kind} {name!r} (registered: {known})") from None

    def describe(self) -> list[PluginInfo]:
        infos = []
        for name, module in self.pm.list_name_plugin():
            infos.append(
                PluginInfo(
                    name=name,
                    origin=self.pm.origins.get(name, "registered in code"),
                    features=_names(self.pm, module, "lbml_register_features"),
                    models=_names(self.pm, module, "lbml_register_models"),
                    data_sources=_names(self.pm, module, "lbml_register_data_sources"),
                )
            )
        return infos


def _names(pm: pluggy.PluginManager, module: Any, hook_name: str) -> tuple[str, ...]:
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.plugin is module:
            return tuple(cls.name for cls in impl.function() or [])
    return ()


def load_registry(plugins_dir: Path | None = None) -> PluginRegistry:
    return PluginRegistry(make_plugin_manager(plugins_dir))
