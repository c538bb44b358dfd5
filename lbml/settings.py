"""Deployment settings: machine-specific paths, endpoints and log level.

Settings are kept apart from scenarios (which are reproducible experiment definitions). Sources,
highest priority first: explicit arguments > ``LBML_*`` environment variables (nested delimiter
``__``, e.g. ``LBML_SIGNALS__ENDPOINT``) > the TOML file (``config/lbml.toml`` or ``$LBML_CONFIG``)
> defaults.
"""

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lbml.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("config/lbml.toml")


class PathsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    runs_dir: Path = Path("runs")
    models_dir: Path = Path("models")
    data_dir: Path = Path("data/generated")
    plugins_dir: Path | None = None
    cache_dir: Path | None = None  # cached look-ahead verdicts; None: <runs_dir>/.cache


class SignalsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = "tcp://127.0.0.1:5557"
    heartbeat_interval_s: float = 1.0
    # Publisher details (lbml.signals); see README "Signals over ZeroMQ".
    publisher_id: str = "lbml"
    encoding: Literal["json", "msgpack"] = "json"
    sndhwm: int = 10_000
    seq_store: Path = Path("state/signals.seq")
    seq_fsync: bool = False
    curve_server_secret: Path | None = None
    curve_authorized_keys: Path | None = None
    allow_insecure: bool = False
    degraded_after_s: float = 90.0
    stale_after_s: float = 180.0


class DownloadSettings(BaseModel):
    """``lbml data download``: where Binance's public data comes from and where it goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://data.binance.vision"  # any server with the same layout (a mirror, a test server)
    dir: Path = Path("data/binance")


class TrackingSettings(BaseModel):
    """Where runs are tracked in MLflow (``lbml.workflows.tracking``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    uri: str | None = None  # None: sqlite:///<runs_dir>/mlflow.db (a local store, no server)
    artifact_root: Path | None = None  # None: <runs_dir>/mlruns
    experiment: str = "lbml"
    artifacts: Literal["none", "summary", "all"] = "summary"  # run-folder files copied to MLflow
    timeout_s: float = Field(default=10.0, gt=0)  # longest wait for the store at the end of a run


class LbmlSettings(BaseSettings):
    """Deployment settings for one machine."""

    model_config = SettingsConfigDict(
        env_prefix="LBML_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    paths: PathsSettings = PathsSettings()
    signals: SignalsSettings = SignalsSettings()
    download: DownloadSettings = DownloadSettings()
    tracking: TrackingSettings = TrackingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _config_file() -> Path | None:
    explicit = os.environ.get("LBML_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: settings file named by LBML_CONFIG does not exist")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(**overrides: object) -> LbmlSettings:
    """Load settings from arguments, environment and the TOML file, in that priority."""
    try:
        return LbmlSettings(**overrides)
    except ValidationError as exc:
        source = os.environ.get("LBML_CONFIG") or str(DEFAULT_CONFIG_FILE)
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    except ValueError as exc:  # malformed TOML surfaces as a ValueError subclass
        source = os.environ.get("LBML_CONFIG") or str(DEFAULT_CONFIG_FILE)
        raise ConfigError(f"{source}: {exc}") from None


def format_validation_error(exc: ValidationError) -> str:
    """Render the first pydantic error as ``dotted.key: reason``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"].endswith("_type") and isinstance(err.get("input"), str | int | float | bool):
        msg = f"{msg}, got {type(err['input']).__name__} {err['input']!r}"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{loc}: {msg}{suffix}" if err["loc"] else f"{msg}{suffix}"
