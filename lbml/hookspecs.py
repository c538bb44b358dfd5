"""pluggy hook specifications: the whole plugin API of lbml.

A plugin is a module (or object) with functions marked ``@hookimpl``. Built-in plugins in
``plugins/`` are registered exactly like third-party ones: through the ``lbml`` entry-point group,
or by dropping a module into the local plugins folder (``paths.plugins_dir`` in settings).
Call hooks with keyword arguments only; specs are only ever extended by adding arguments.
"""

import pluggy

PROJECT = "lbml"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lbml_register_features() -> list[type]:
    """Return feature plugin classes (subclasses of ``lbml.features.base.FeaturePlugin``).

    Every plugin's result is collected; a feature plugin ``name`` must be unique across plugins.
    """


@hookspec
def lbml_register_models() -> list[type]:
    """Return model plugin classes (subclasses of ``lbml.models.base.ModelPlugin``).

    Every plugin's result is collected; a model plugin ``name`` must be unique across plugins.
    """


@hookspec
def lbml_register_data_sources() -> list[type]:
    """Return data-source classes (subclasses of ``lbml.data.sources.DataSource``).

    A data source turns a scenario's ``[data]`` section or a file path into ``MarketData``.
    Every plugin's result is collected; a data-source ``name`` must be unique across plugins.
    """
