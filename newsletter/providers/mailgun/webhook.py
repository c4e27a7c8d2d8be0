"""Mailgun's webhooks: is a delivery signed with the webhook signing key, fresh and new?"""

# Each delivery is a JSON object whose `signature` holds a timestamp, a random token and the
# hex HMAC-SHA256 of timestamp + token keyed with the account's webhook signing key. A
# delivery is refused when the HMAC is wrong, when the timestamp is further than
# [serve] webhook_max_age_seconds from now, or when its token was seen before (Mailgun's
# advice against replays). Tokens are remembered in memory for that window, which is all a
# replay can use; after a restart a replayed event is still recorded once, by its event id.

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter import subscribers as subs
from newsletter.config import SECRET_KEYS
from newsletter.errors import ConfigError

SOURCE = "mailgun"
KEY_ENV = SECRET_KEYS[("mailgun", "webhook_signing_key")]
MIN_KEY = 16
# `failed` reasons that say nothing about the address: the message or the sender was refused.
NOT_THE_ADDRESS = frozenset({"old", "espblock"})


class WebhookRefused(Exception):
    """Not from Mailgun, not fresh, or seen before; str() is for the log, not the caller."""


def load_key(env: Mapping[str, str]) -> bytes | None:
    """The webhook signing key from MAILGUN_WEBHOOK_SIGNING_KEY; None when unset."""
    value = env.get(KEY_ENV, "").strip()
    if not value:
        return None
    if len(value) < MIN_KEY or not value.isascii() or not value.isprintable():
        raise ConfigError(
            f"{KEY_ENV} is not a signing key: copy the HTTP webhook signing key from "
            "Mailgun's Sending > Webhooks page"
        )
    return value.encode()


def sign(key: bytes, timestamp: str, token: str) -> str:
    return hmac.new(key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


class Tokens:
    """Tokens of verified deliveries within the freshness window, so none is used twice."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, token: str, window: float, now: float) -> bool:
        """True the first time a token is claimed within the window; False for a replay."""
        with self._lock:
            if len(self._seen) > 1000:
                self._seen = {t: at for t, at in self._seen.items() if now - at <= 2 * window}
            if token in self._seen:
                return False
            self._seen[token] = now
            return True

    def release(self, token: str) -> None:
        """Forget a token whose delivery was not processed, so Mailgun's retry is taken."""
        with self._lock:
            self._seen.pop(token, None)


def parse(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("signature"), dict):
        raise WebhookRefused("body is not a Mailgun webhook (no signature object)")
    return data


def verify(
    key: bytes, data: dict, tokens: Tokens, *, tolerance: float, now: float | None = None
) -> str:
    """The token of a signed, fresh, unseen delivery; WebhookRefused otherwise."""
    signature = data["signature"]
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if isinstance(timestamp, int):
        timestamp = str(timestamp)
    if not all(isinstance(v, str) and v for v in (timestamp, token, given)):
        raise WebhookRefused("signature object without timestamp, token or signature")
    if not hmac.compare_digest(
        sign(key, timestamp, token).encode(), given.encode("utf-8", "replace")
    ):
        raise WebhookRefused("signature does not match")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRefused("timestamp is not a number") from None
    now = time.time() if now is None else now
    if abs(now - sent) > tolerance:
        raise WebhookRefused(f"timestamp is {now - sent:.0f} s off (allowed: {tolerance:.0f} s)")
    if not tokens.claim(token, tolerance, now):
        raise WebhookRefused("token seen before: a replayed delivery")
    return token


@dataclass(frozen=True)
class Parsed:
    event_id: str
    event: str  # failed:permanent, failed:temporary, complained, unsubscribed, delivered, ...
    email: str | None
    list_name: str | None
    issue: str | None
    occurred_at: str | None
    payload: dict


def read(data: dict) -> Parsed:
    """The delivery's event as stored: by its Mailgun event id, else a hash of it."""
    event = data.get("event-data") if isinstance(data.get("event-data"), dict) else {}
    kind = str(event.get("event") or "unknown")[:32]
    if kind == "failed":
        kind = f"failed:{str(event.get('severity') or 'unknown')[:16]}"
    ident = event.get("id")
    if isinstance(ident, str) and ident:
        event_id = ident[:200]
    else:
        canonical = json.dumps(event, sort_keys=True, ensure_ascii=False).encode()
        event_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    email = event.get("recipient")
    email = subs.email_key(email) if isinstance(email, str) and email.strip() else None
    variables = event.get("user-variables")
    variables = variables if isinstance(variables, dict) else {}
    occurred_at = None
    stamp = event.get("timestamp")
    if isinstance(stamp, int | float) and 0 < stamp < 1e11:
        occurred_at = dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds")
    return Parsed(event_id, kind, email, _text(variables.get("list")),
                  _text(variables.get("issue")), occurred_at, event)  # fmt: skip


def change(event: str, email: str | None, payload: dict) -> tuple[str, str] | None:
    """(new status, suppression reason) an event calls for; None for those only recorded."""
    if not email:
        return None
    if event == "failed:permanent":
        reason = str(payload.get("reason") or "").lower()
        if reason == "suppress-complaint":
            return "complained", "mailgun: on Mailgun's complaint list"
        if reason == "suppress-unsubscribe":
            return "unsubscribed", "mailgun: on Mailgun's unsubscribe list"
        if reason in NOT_THE_ADDRESS:
            return None
        return "bounced", "mailgun: permanent failure"
    if event == "complained":
        return "complained", "mailgun: complaint"
    if event == "unsubscribed":
        return "unsubscribed", "mailgun: unsubscribe"
    return None  # temporary failures, deliveries, opens, clicks: the address may be fine


def _text(value) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
