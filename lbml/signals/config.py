"""Build a ``PublisherConfig`` from the deployment settings (``[signals]`` in config/lbml.toml)."""

from lbml.settings import SignalsSettings
from lbml.signals.publisher import PublisherConfig
from lbml.signals.schema import SignalsError
from lbml.signals.security import CurveConfig, check_bind_allowed


def publisher_config(
    settings: SignalsSettings, *, model_id: str, feature_schema_hash: str, endpoint: str | None = None
) -> PublisherConfig:
    """Combine the machine's signal settings with the identity of the model being served."""
    secret, allowed = settings.curve_server_secret, settings.curve_authorized_keys
    if (secret is None) != (allowed is None):
        raise SignalsError("signals: curve_server_secret and curve_authorized_keys must be set together")
    curve = CurveConfig(secret, allowed) if secret is not None else None
    check_bind_allowed(endpoint or settings.endpoint, curve, settings.allow_insecure)
    return PublisherConfig(
        model_id=model_id,
        feature_schema_hash=feature_schema_hash,
        endpoint=endpoint or settings.endpoint,
        publisher_id=settings.publisher_id,
        encoding=settings.encoding,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        sndhwm=settings.sndhwm,
        seq_store=settings.seq_store,
        seq_fsync=settings.seq_fsync,
        curve=curve,
        allow_insecure=settings.allow_insecure,
        degraded_after_s=settings.degraded_after_s,
        stale_after_s=settings.stale_after_s,
    )
