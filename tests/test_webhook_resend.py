"""Resend's Svix-signed webhooks against the running service: verified, applied once, kept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

import pytest
import resend
from test_serve import LiveServer, configure, statuses
from test_webhook import suppressions

from newsletter import subscribers as subs
from newsletter.errors import ConfigError
from newsletter.web.app import create_app
from newsletter.web.events import EventStore

SECRET = base64.b64encode(b"k" * 24).decode()
WHSEC = f"whsec_{SECRET}"


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None, msg_id=None):
    """Headers as Svix sends them: HMAC-SHA256 over id.timestamp.body, base64, v1-prefixed."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    key = base64.b64decode(secret)
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


def event(kind: str, to: str, **data) -> bytes:
    payload = {
        "type": kind,
        "created_at": "2026-01-05T10:00:00.000Z",
        "data": {
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "Test Weekly <news@example.org>",
            "to": [to],
            "subject": "Hello",
            "tags": {"issue": "sample", "list": "main"},
            **data,
        },
    }
    return json.dumps(payload).encode()


@pytest.fixture
def live(workspace: Path):
    config = configure(workspace)
    with LiveServer(config, env={"RESEND_WEBHOOK_SECRET": WHSEC}) as server:
        yield server


def test_the_test_signer_is_the_one_resends_sdk_accepts():
    body = event("email.bounced", "ada@example.org")
    headers = signed(body)
    verified = resend.Webhooks.verify(
        {
            "payload": body.decode(),
            "headers": {
                "id": headers["svix-id"],
                "timestamp": headers["svix-timestamp"],
                "signature": headers["svix-signature"],
            },
            "webhook_secret": WHSEC,
        }
    )
    assert verified["type"] == "email.bounced"


def test_signed_bounces_and_complaints_suppress_once_and_replays_change_nothing(live, workspace):
    subs.add_subscriber(workspace / "subscribers", "main", "lin@example.com")
    permanent = event("email.bounced", "Ada@Example.org", bounce={"type": "Permanent"})
    transient = event("email.bounced", "lin@example.com", bounce={"type": "Transient"})
    complaint = event("email.complained", "grace@example.net")
    delivered = event("email.delivered", "grace@example.net")
    with live.client() as client:
        answers = [
            client.post("/webhooks/resend", content=body, headers=signed(body))
            for body in (permanent, transient, complaint, delivered)
        ]
        # The same delivery again, within the window (Svix retries; or a replay): once only.
        headers = signed(permanent, msg_id="msg_replayed")
        first = client.post("/webhooks/resend", content=permanent, headers=headers)
        replay = client.post("/webhooks/resend", content=permanent, headers=headers)
    assert [a.status_code for a in answers] == [200] * 4
    assert first.json() == {"received": 1, "new": 1}
    assert replay.status_code == 200 and replay.json() == {"received": 1, "new": 0}
    final = statuses(workspace)
    assert final["ada@example.org"] == "bounced"
    assert final["grace@example.net"] == "complained"
    assert final["lin@example.com"] == "subscribed"  # a transient bounce is retried by Resend
    assert suppressions(workspace) == {
        "ada@example.org": "resend: bounce",
        "grace@example.net": "resend: complaint",
    }
    store = EventStore.for_workspace(workspace / ".newsletter")
    assert store.counts("resend") == {
        "email.bounced": 3,
        "email.complained": 1,
        "email.delivered": 1,
    }
    bounce = store.for_email("ada@example.org")[0]
    assert (bounce.list_name, bounce.issue) == ("main", "sample")


def test_forged_tampered_stale_and_unsigned_deliveries_are_refused(live, workspace):
    body = event("email.complained", "ada@example.org")
    other = base64.b64encode(b"o" * 24).decode()
    now = int(time.time())
    good = signed(body)
    attempts = {
        "unsigned": {"Content-Type": "application/json"},
        "other secret": signed(body, other),
        "stale replay": signed(body, timestamp=now - 3600),
        "from the future": signed(body, timestamp=now + 3600),
        "timestamp changed": {**signed(body, timestamp=now - 3600), "svix-timestamp": str(now)},
        "id changed": {**good, "svix-id": "msg_other"},
    }
    with live.client() as client:
        answers = {
            name: client.post("/webhooks/resend", content=body, headers=headers)
            for name, headers in attempts.items()
        }
        tampered = body.replace(b"ada@", b"grace@")
        answers["tampered"] = client.post("/webhooks/resend", content=tampered, headers=good)
    assert {n: a.status_code for n, a in answers.items()} == dict.fromkeys(answers, 403)
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    assert suppressions(workspace) == {}
    assert EventStore.for_workspace(workspace / ".newsletter").counts() == {}


def test_without_a_secret_the_resend_webhook_refuses_everything(workspace):
    body = event("email.complained", "ada@example.org")
    with LiveServer(configure(workspace), env={}) as server, server.client() as client:
        answer = client.post("/webhooks/resend", content=body, headers=signed(body))
    assert answer.status_code == 503
    assert suppressions(workspace) == {}


def test_a_secret_that_is_not_one_stops_the_service_from_starting(workspace):
    with pytest.raises(ConfigError, match="RESEND_WEBHOOK_SECRET is not a signing secret"):
        create_app(configure(workspace), env={"RESEND_WEBHOOK_SECRET": "whsec_%%%"})
