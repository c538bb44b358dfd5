"""Checking a scenario's ``[model]`` section against its model plugin before any data loads.

A typo in ``[model.params]`` or a value the estimator refuses must stop ``lbml`` at once with one
line naming the file and the field, not after the data has loaded. The plugin decides what is
valid (``ModelPlugin.validate_params``); the helpers here give every plugin the same checks:
unknown names against the ``__init__`` signature (with the closest known name), and values against
scikit-learn style ``_parameter_constraints`` of the plugin and of any estimator it builds.
"""

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from lbml.errors import ConfigError, PluginError

_PARAMETER = re.compile(r"The '(\w+)' parameter")


def check_names(params: Mapping[str, Any], known: Iterable[str], plugin: str, prefix: str) -> None:
    """Raise ``ConfigError`` for the first name in ``params`` that is not in ``known``."""
    known = sorted(known)
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known) or 'none'}"
            raise ConfigError(f"{prefix}.{key}: unknown parameter of {plugin} ({hint})")


def check_estimator(estimator: Any, params: Mapping[str, Any], prefix: str) -> None:
    """Run scikit-learn's parameter validation on ``estimator`` and every estimator nested in it.

    The error names ``prefix.<key>`` when the refused parameter is one of ``params``.
    """
    from sklearn.base import BaseEstimator
    from sklearn.utils._param_validation import InvalidParameterError

    nested = [v for v in estimator.get_params(deep=True).values() if isinstance(v, BaseEstimator)]
    for each in (estimator, *nested):
        try:
            each._validate_params()
        except InvalidParameterError as exc:
            found = _PARAMETER.search(str(exc))
            key = found.group(1) if found and found.group(1) in params else None
            raise ConfigError(f"{prefix}.{key}: {exc}" if key else f"{prefix}: {exc}") from None


def check_model_config(plugin: str, params: Mapping[str, Any], registry: Any, source: str) -> None:
    """Raise ``ConfigError`` (``source: model.params.<key>: reason``) unless ``plugin`` accepts ``params``."""
    try:
        cls = registry.model(plugin)
    except PluginError as exc:
        raise ConfigError(f"{source}: model.plugin: {exc}") from None
    try:
        cls.validate_params(params)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
