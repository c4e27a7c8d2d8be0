"""Resend's webhooks, signed by Svix: is a delivery signed with the endpoint's secret, and fresh?"""

# An HMAC-SHA256, keyed with the base64 part of the `whsec_` secret, over
# "{svix-id}.{svix-timestamp}.{body}", base64 in svix-signature ("v1,<sig>", space-separated
# when the secret was rotated). The timestamp must be recent, so a captured request cannot
# be replayed later; within that window a replay changes nothing because its events are
# recorded once, by svix-id.

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from newsletter.config import SECRET_KEYS
from newsletter.errors import ConfigError
from newsletter.providers.common import timestamp_age

SECRET_ENV = SECRET_KEYS[("resend", "webhook_secret")]
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "svix-id", "svix-timestamp", "svix-signature"


class WebhookRefused(Exception):
    """A delivery that is not from Resend or not fresh; str() is for the log, not the caller."""


def load_secret(env: Mapping[str, str]) -> bytes | None:
    """The signing secret from RESEND_WEBHOOK_SECRET (whsec_…), None when unset."""
    value = env.get(SECRET_ENV, "").strip()
    if not value:
        return None
    try:
        secret = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (ValueError, binascii.Error):
        secret = b""
    if len(secret) < 16:
        raise ConfigError(
            f"{SECRET_ENV} is not a signing secret: copy it (whsec_…) from the webhook's "
            "page in Resend's dashboard"
        )
    return secret


def sign(secret: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float,
    now: float | None = None,
) -> str:
    """The svix-id of a delivery signed with the secret and recent; WebhookRefused otherwise."""
    message_id = headers.get(ID_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not message_id or not timestamp or not signatures:
        raise WebhookRefused("unsigned request (no svix-id, svix-timestamp or svix-signature)")
    expected = sign(secret, message_id, timestamp, body).encode()
    if not any(
        hmac.compare_digest(expected, given.encode("utf-8", "replace"))
        for given in signatures.split()
    ):
        raise WebhookRefused("signature does not match")
    if stale := timestamp_age(timestamp, tolerance, now):
        raise WebhookRefused(stale)
    return message_id
