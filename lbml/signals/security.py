"""CurveZMQ keys, ZAP authentication of subscribers, and the loopback rule for plain sockets."""

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from lbml.signals.schema import SignalsError


@dataclass(frozen=True)
class CurveConfig:
    """Server side of CurveZMQ.

    ``server_secret_file`` is a secret certificate written by ``lbml signals keygen``;
    ``authorized_keys_dir`` holds the public certificates (``*.key``) of the allowed subscribers.
    """

    server_secret_file: Path
    authorized_keys_dir: Path


def is_loopback_endpoint(endpoint: str) -> bool:
    """Return True for ``ipc://``/``inproc://`` and ``tcp://`` on a loopback address or name."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp" or not address:
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: may be reachable from outside


def check_bind_allowed(endpoint: str, curve: CurveConfig | None, allow_insecure: bool) -> None:
    """Refuse to bind a non-loopback endpoint without CURVE unless explicitly overridden."""
    if curve is None and not allow_insecure and not is_loopback_endpoint(endpoint):
        raise SignalsError(
            f"signals.endpoint: {endpoint} is not loopback and CURVE is off; configure "
            "signals.curve_server_secret and signals.curve_authorized_keys, or set signals.allow_insecure = true"
        )


def generate_keypair(out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` (public) and ``<name>.key_secret`` (mode 0600) into ``out_dir``."""
    if not name or "/" in name or name.startswith("."):
        raise SignalsError(f"--name: {name!r} is not a plain file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    public, secret = out_dir / f"{name}.key", out_dir / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise SignalsError(f"{path}: already exists; refusing to overwrite a key")
    public_file, secret_file = zmq.auth.create_certificates(str(out_dir), name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def load_secret_certificate(path: Path) -> tuple[bytes, bytes]:
    """Return ``(public, secret)`` Z85 keys from a secret certificate file."""
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SignalsError(f"{path}: cannot read CURVE certificate: {exc}") from None
    if secret is None:
        raise SignalsError(f"{path}: has no secret-key (use the .key_secret file)")
    return public, secret


def load_public_key(path: Path) -> bytes:
    """Return the Z85 public key of a certificate file."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SignalsError(f"{path}: cannot read CURVE certificate: {exc}") from None
    return public


def start_authenticator(ctx: zmq.Context, authorized_keys_dir: Path) -> ThreadAuthenticator:
    """Start a ZAP handler that admits only the public keys found in ``authorized_keys_dir``."""
    if not authorized_keys_dir.is_dir():
        raise SignalsError(f"{authorized_keys_dir}: authorized keys folder does not exist")
    keys = sorted(authorized_keys_dir.glob("*.key"))
    if not keys:
        raise SignalsError(f"{authorized_keys_dir}: no client public keys (*.key); nobody could subscribe")
    for key in keys:
        load_public_key(key)  # a malformed file is a one-line error, not a silent exclusion
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(authorized_keys_dir))
    return auth


def apply_server_curve(socket: zmq.Socket, secret_file: Path) -> None:
    """Make ``socket`` a CURVE server with the key pair in ``secret_file``."""
    public, secret = load_secret_certificate(secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def apply_client_curve(socket: zmq.Socket, server_public_file: Path, client_secret_file: Path) -> None:
    """Make ``socket`` a CURVE client of the server whose public certificate is given."""
    public, secret = load_secret_certificate(client_secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public_key(server_public_file)
