"""Signed tracking tokens: `<payload>.<signature>`, both base64url.

The payload is a JSON array [kind, issue, list, address id, destination]; the signature is an
HMAC of it with the workspace secret under a purpose of its own ("track"), so a tracking
token can never pass for an unsubscribe token or the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

CLICK = "c"
OPEN = "o"
_SIG_BYTES = 16
MAX_TOKEN = 4096  # a longer path is refused before any decoding


@dataclass(frozen=True)
class Tracked:
    kind: str  # CLICK or OPEN
    issue: str
    list_name: str
    address_id: str  # tokens.address_id(secret, list, key): never the address itself
    url: str  # the destination of a click; "" for an open


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, f"track\0{payload}".encode(), hashlib.sha256).digest()
    return _b64(digest[:_SIG_BYTES])


def make(secret: bytes, tracked: Tracked) -> str:
    data = [tracked.kind, tracked.issue, tracked.list_name, tracked.address_id, tracked.url]
    payload = _b64(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_sign(secret, payload)}"


def verify(secret: bytes, token: str, kind: str) -> Tracked | None:
    """What a genuine token of this kind carries; None for a forged, altered or foreign one."""
    if len(token) > MAX_TOKEN:
        return None
    payload, _, signature = token.partition(".")
    if not payload or not hmac.compare_digest(_sign(secret, payload).encode(), signature.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not (isinstance(data, list) and len(data) == 5 and all(isinstance(d, str) for d in data)):
        return None
    tracked = Tracked(*data)
    return tracked if tracked.kind == kind else None
