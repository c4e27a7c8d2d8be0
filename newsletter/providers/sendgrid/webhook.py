"""SendGrid's Signed Event Webhook: is a delivery signed by the account's key, and fresh?"""

# An ECDSA P-256 / SHA-256 signature (base64 DER) over the timestamp header followed by the
# raw body, checked with the public key SendGrid shows (base64 DER SubjectPublicKeyInfo). The
# timestamp must be recent, so a captured request cannot be replayed later; within that
# window a replay is harmless because every event is recorded once, by its sg_event_id.

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from newsletter.errors import ConfigError
from newsletter.providers.common import timestamp_age

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookRefused(Exception):
    """A delivery that is not from SendGrid or not fresh; str() is for the log, not the caller."""


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """[serve] webhook_public_key (base64 DER, as SendGrid shows it; PEM armour is tolerated)."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        text = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    try:
        key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ConfigError(
            "[serve] webhook_public_key is not a public key: copy the Verification Key from "
            "SendGrid's Mail Settings > Event Webhook > Signature Verification"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("[serve] webhook_public_key must be an ECDSA P-256 public key")
    return key


def verify(
    key: ec.EllipticCurvePublicKey,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float,
    now: float | None = None,
) -> None:
    """Raise WebhookRefused unless the request is signed by the key and its timestamp is recent."""
    signature = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER.lower()) or headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise WebhookRefused("unsigned request (no signature or timestamp header)")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRefused("signature is not base64") from None
    try:
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WebhookRefused("signature does not match") from None
    if stale := timestamp_age(timestamp, tolerance, now):
        raise WebhookRefused(stale)
