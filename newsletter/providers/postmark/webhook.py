"""Postmark's webhooks: is a delivery from Postmark, and what does each event change?"""

# Postmark signs nothing: it authenticates with the HTTP basic auth credentials written into
# the webhook URL (https://postmark:PASSWORD@news.example.org/webhooks/postmark), over TLS.
# The password is a secret from the environment; [postmark] webhook_allow_ips may narrow the
# senders to Postmark's published addresses as well. A captured delivery replayed changes
# nothing: Bounce and SpamComplaint events are recorded once by their ID, and the others by
# a hash of their content.

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter import subscribers as subs
from newsletter.config import SECRET_KEYS, Config
from newsletter.errors import ConfigError

SOURCE = "postmark"
PASSWORD_ENV = SECRET_KEYS[("postmark", "webhook_password")]
MIN_PASSWORD = 16
HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress"})
SUPPRESSION_STATUS = {  # SubscriptionChange's SuppressionReason -> the address's new status
    "HardBounce": ("bounced", "postmark: hard bounce"),
    "SpamComplaint": ("complained", "postmark: spam complaint"),
    "ManualSuppression": ("unsubscribed", "postmark: unsubscribe"),
}
_KEPT_OUT = ("Content",)  # the bounce's full message: large, and not ours to keep


class WebhookRefused(Exception):
    """Not from Postmark (or not readable); str() is for the log, not the caller."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, password=***)"

    @classmethod
    def load(cls, config: Config, env: Mapping[str, str] | None = None) -> Credentials | None:
        """The webhook's credentials; None (webhook refused) when no password is set."""
        env = os.environ if env is None else env
        password = env.get(PASSWORD_ENV, "")
        if not password:
            return None
        if len(password) < MIN_PASSWORD:
            raise ConfigError(
                f"{PASSWORD_ENV} is shorter than {MIN_PASSWORD} characters: use a long random "
                "one (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
            )
        networks = []
        for entry in config.postmark.webhook_allow_ips:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"[postmark] webhook_allow_ips: {entry!r} is not an IP address or network"
                ) from None
        return cls(config.postmark.webhook_username, password, tuple(networks))

    def verify(self, authorization: str | None, client_ip: str | None) -> None:
        """Raise WebhookRefused unless the basic auth credentials (and address) are Postmark's."""
        if self.networks:
            try:
                ip = ipaddress.ip_address(client_ip or "")
            except ValueError:
                raise WebhookRefused(f"client address {client_ip!r} is not an IP") from None
            if not any(ip in net for net in self.networks):
                raise WebhookRefused(f"{ip} is not in [postmark] webhook_allow_ips")
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not value:
            raise WebhookRefused("no basic auth credentials")
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise WebhookRefused("credentials are not base64 user:password") from None
        # Both compared in full whatever the first says: no timing hint of which was wrong.
        same_user = hmac.compare_digest(user.encode(), self.username.encode())
        same_password = hmac.compare_digest(password.encode(), self.password.encode())
        if not (sep and same_user and same_password):
            raise WebhookRefused("wrong user name or password")


def parse(body: bytes) -> dict:
    """The one event a delivery carries; WebhookRefused for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("RecordType"), str):
        raise WebhookRefused("body is not a Postmark event (no RecordType)")
    return data


@dataclass(frozen=True)
class Parsed:
    event_id: str
    event: str  # RecordType, with the bounce Type: "Bounce:HardBounce", "SpamComplaint", ...
    email: str | None
    list_name: str | None
    issue: str | None
    occurred_at: str | None
    payload: dict


def read(raw: dict) -> Parsed:
    """One event as stored: its ID (Bounce, SpamComplaint) or a hash of it (the others)."""
    kind = raw["RecordType"][:32]
    payload = {k: v for k, v in raw.items() if k not in _KEPT_OUT}
    ident = raw.get("ID")
    if isinstance(ident, int | str) and str(ident) and kind in ("Bounce", "SpamComplaint"):
        event_id = f"{kind}:{ident}"
    else:
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        event_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    if kind == "Bounce" and isinstance(raw.get("Type"), str):
        kind = f"Bounce:{raw['Type'][:32]}"
    email = raw.get("Email") if "Email" in raw else raw.get("Recipient")
    email = subs.email_key(email) if isinstance(email, str) and email.strip() else None
    meta = raw.get("Metadata") if isinstance(raw.get("Metadata"), dict) else {}
    when = next((raw[k] for k in ("BouncedAt", "ChangedAt") if isinstance(raw.get(k), str)), None)
    return Parsed(event_id, kind, email, _text(meta.get("list")), _text(meta.get("issue")),
                  _iso(when), payload)  # fmt: skip


def change(event: str, email: str | None, payload: dict) -> tuple[str, str] | None:
    """(new status, suppression reason) an event calls for; None for those only recorded."""
    if not email:
        return None
    if event.startswith("Bounce:"):
        kind = event.partition(":")[2]
        if kind in HARD_BOUNCES:
            return "bounced", "postmark: hard bounce"
        if kind == "SpamComplaint":
            return "complained", "postmark: spam complaint"
        if kind == "Unsubscribe":
            return "unsubscribed", "postmark: unsubscribe"
        return None  # soft bounces, transient failures, auto-replies: the address may be fine
    if event == "SpamComplaint":
        return "complained", "postmark: spam complaint"
    if event == "SubscriptionChange" and payload.get("SuppressSending") is True:
        return SUPPRESSION_STATUS.get(str(payload.get("SuppressionReason")))
    return None  # reactivations, deliveries, opens, clicks


def _text(value) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    try:  # Postmark writes seven decimal places, which fromisoformat takes from 3.11 on
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")
