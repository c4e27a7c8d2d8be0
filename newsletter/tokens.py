"""Signed tokens for unsubscribe and confirmation links: they name a list and an address without
exposing it. Unsubscribe tokens stay valid; confirmation tokens carry their expiry, signed."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import ConfigError
from newsletter.files import make_folder

SECRET_ENV = "NEWSLETTER_SECRET"
SECRET_FILE = "secret"
MIN_SECRET = 32  # bytes of key material, from the file or the environment
_ID_BYTES = 12
# `newsletter doctor`'s one-click check: serve answers such a token 200 and changes nothing.
PROBE_PURPOSE = "probe"
_SIG_BYTES = 16


@dataclass(frozen=True)
class Claims:
    purpose: str
    list_name: str
    address_id: str  # keyed hash of the address; match it with address_id()
    expires_at: int | None = None  # unix time, for expiring tokens
    request_id: str | None = None  # the one request a confirmation token was made for


def load_secret(state_dir: Path, env: Mapping[str, str] | None = None) -> bytes:
    """NEWSLETTER_SECRET, or a secret generated once and kept in the workspace's state folder.

    Either must hold at least MIN_SECRET bytes: a short key lets anyone forge links.
    """
    env = os.environ if env is None else env
    value = env.get(SECRET_ENV, "")
    if value:
        # Measured without surrounding blanks, but used as given: links already sent stay valid.
        material = len(value.strip().encode())
        if material < MIN_SECRET:
            raise ConfigError(
                f"{SECRET_ENV} is too short ({material} bytes): use at least {MIN_SECRET} "
                "random characters, e.g. from `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
        return value.encode()
    path = state_dir / SECRET_FILE
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = _create_secret(state_dir, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secret: {exc.strerror}") from None
    if len(key) < MIN_SECRET:
        raise ConfigError(
            f"{path}: the secret is too short ({len(key)} bytes, at least {MIN_SECRET} needed): "
            f"delete the file to have a new one generated, or set {SECRET_ENV}"
        )
    return key


def _create_secret(state_dir: Path, path: Path) -> bytes:
    """Write a fresh secret so that `path` never exists empty or half-written, even after a crash."""
    make_folder(state_dir, private=True)
    fresh = secrets.token_urlsafe(32).encode()
    # A name of its own: racing processes never write into each other's temporary file.
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".secret-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(fresh)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another process won the race; then use theirs
        except FileExistsError:
            pass
        else:
            _fsync_dir(state_dir)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path.read_bytes().strip()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes):
    """HMAC-SHA256 keyed with `secret`, nothing hashed yet: copied for each token (a send makes
    two per recipient), which skips working the key in again."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def _mac(secret: bytes, payload: bytes) -> bytes:
    mac = _keyed(secret).copy()
    mac.update(payload)
    return mac.digest()


def address_id(secret: bytes, list_name: str, key: str) -> str:
    """A stable keyed hash of (list, normalised address): what tokens carry instead of the address."""
    return _b64(_mac(secret, f"id\0{list_name}\0{key}".encode())[:_ID_BYTES])


def _signature(secret: bytes, purpose: str, list_name: str, ident: str) -> str:
    payload = f"sig\0{purpose}\0{list_name}\0{ident}".encode()
    return _b64(_mac(secret, payload)[:_SIG_BYTES])


def make_token(secret: bytes, list_name: str, key: str, purpose: str = "u") -> str:
    """`<list>.<address id>.<signature>`, URL-safe."""
    ident = address_id(secret, list_name, key)
    return f"{list_name}.{ident}.{_signature(secret, purpose, list_name, ident)}"


def verify_token(secret: bytes, token: str, purpose: str = "u") -> Claims | None:
    """The claims of a genuine token, or None for a forged, truncated or foreign one."""
    list_name, _, rest = token.rpartition(".")
    list_name, _, ident = list_name.rpartition(".")
    if not list_name or not ident or not rest:
        return None
    expected = _signature(secret, purpose, list_name, ident)
    if not hmac.compare_digest(expected.encode(), rest.encode()):
        return None
    try:
        if len(_unb64(ident)) != _ID_BYTES:
            return None
    except (ValueError, TypeError):
        return None
    return Claims(purpose, list_name, ident)


def make_expiring_token(
    secret: bytes, list_name: str, key: str, purpose: str, expires_at: int
) -> str:
    """`<list>.<address id>.<expiry>.<signature>`: the expiry (unix time) is signed with the rest."""
    ident = address_id(secret, list_name, key)
    stamp = str(int(expires_at))
    return (
        f"{list_name}.{ident}.{stamp}.{_signature(secret, f'{purpose}:{stamp}', list_name, ident)}"
    )


def verify_expiring_token(
    secret: bytes, token: str, purpose: str, now: float | None = None
) -> Claims | None:
    """The claims of a genuine token that has not expired yet; None for anything else."""
    head, _, sig = token.rpartition(".")
    head, _, stamp = head.rpartition(".")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return None
    claims = verify_token(secret, f"{head}.{sig}", purpose=f"{purpose}:{stamp}")
    if claims is None:
        return None
    expires_at = int(stamp)
    if (time.time() if now is None else now) > expires_at:
        return None
    return Claims(purpose, claims.list_name, claims.address_id, expires_at)


_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,32}")


def make_request_token(
    secret: bytes, list_name: str, key: str, purpose: str, request_id: str, expires_at: int
) -> str:
    """An expiring token bound to one request: `<expiring token>.<request id>`, all signed."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise ValueError("a request id is 8 to 32 URL-safe characters")
    inner = make_expiring_token(secret, list_name, key, f"{purpose}/{request_id}", expires_at)
    return f"{inner}.{request_id}"


def verify_request_token(
    secret: bytes, token: str, purpose: str, now: float | None = None
) -> Claims | None:
    """The claims (with request_id) of a genuine, unexpired request token; None for anything else."""
    inner, _, request_id = token.rpartition(".")
    if not _REQUEST_ID.fullmatch(request_id):
        return None
    claims = verify_expiring_token(secret, inner, f"{purpose}/{request_id}", now=now)
    if claims is None:
        return None
    return Claims(purpose, claims.list_name, claims.address_id, claims.expires_at, request_id)
