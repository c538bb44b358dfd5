import inspect
import subprocess
import sys

import pytest

from lbml import hookspecs
from lbml.errors import PluginError
from lbml.plugins import load_registry


def test_builtins_come_through_the_entry_point_group(registry):
    assert {"core"} <= set(registry.features)
    assert "xgboost" in registry.models
    assert {"synthetic", "files"} <= set(registry.data_sources)
    origins = {info.name: info.origin for info in registry.describe()}
    assert origins["core_features"].startswith("entry point of lbml")
    assert origins["xgboost_model"].startswith("entry point of lbml")


def test_every_hookspec_is_documented():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("lbml_")]
    assert len(specs) == 3
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.strip()) > 40, spec.__name__


LOCAL_PLUGIN = '''
import math
from lbml.features.base import FeaturePlugin
from lbml.hookspecs import hookimpl

class HalfRange(FeaturePlugin):
    name = "half_range"
    def output_names(self):
        return ("half_range",)
    def warmup_bars(self):
        return 1
    def reset(self):
        pass
    def update(self, bar):
        return (math.log(bar.high / bar.low) / 2,)

@hookimpl
def lbml_register_features():
    return [HalfRange]
'''


def test_local_plugins_folder_is_a_second_route(tmp_path):
    (tmp_path / "my_features.py").write_text(LOCAL_PLUGIN)
    registry = load_registry(tmp_path)
    assert "half_range" in registry.features
    info = {i.name: i for i in registry.describe()}["local:my_features"]
    assert info.origin == f"local file {tmp_path / 'my_features.py'}"
    assert info.features == ("half_range",)


def test_duplicate_feature_name_is_refused(tmp_path):
    (tmp_path / "dupe.py").write_text(LOCAL_PLUGIN.replace('"half_range"', '"core"', 1))
    with pytest.raises(PluginError, match="'core' is already registered"):
        load_registry(tmp_path)


def test_unknown_plugin_names_the_registered_ones(registry):
    with pytest.raises(PluginError, match=r"unknown model plugin 'lightgbm' \(registered: .*xgboost"):
        registry.model("lightgbm")


def test_cli_plugins_lists_origin(tmp_path):
    (tmp_path / "my_features.py").write_text(LOCAL_PLUGIN)
    env = {"LBML_PATHS__PLUGINS_DIR": str(tmp_path), "PATH": ""}
    proc = subprocess.run([sys.executable, "-m", "lbml", "plugins"], capture_output=True, text=True, env=env, check=True)
    assert "core_features  [entry point of lbml (plugins.features_core)]" in proc.stdout
    assert "local:my_features  [local file" in proc.stdout
    assert "features: half_range" in proc.stdout
