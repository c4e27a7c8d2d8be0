"""SendGrid's signed Event Webhook against the running service: verified, applied once, kept."""

from __future__ import annotations

import base64
import csv
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_serve import LiveServer, configure, statuses

from newsletter import subscribers as subs
from newsletter.errors import ConfigError
from newsletter.providers.sendgrid.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
)
from newsletter.web.events import EventStore
from newsletter.web.webhooks import action_for, to_event


def key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and its public half as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def signed(private, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
    }


def events_body(*events: dict) -> bytes:
    now = int(time.time())
    return json.dumps([{"timestamp": now, **e} for e in events]).encode()


@pytest.fixture
def keys():
    return key_pair()


@pytest.fixture
def live(workspace: Path, keys):
    _, public = keys
    config = configure(workspace, f'webhook_public_key = "{public}"')
    with LiveServer(config) as server:
        yield server


def suppressions(root: Path) -> dict[str, str]:
    path = subs.suppressions_path(root / "subscribers")
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["email"]: row["reason"] for row in csv.DictReader(handle)}


def test_signed_events_update_lists_and_suppressions_once(live, workspace, keys):
    private, _ = keys
    subs.add_subscriber(workspace / "subscribers", "main", "lin@example.com")
    subs.add_subscriber(workspace / "subscribers", "main", "max@example.com")
    body = events_body(
        {"event": "delivered", "email": "grace@example.net", "sg_event_id": "e1"},
        {
            "event": "bounce",
            "type": "bounce",
            "email": "Ada@Example.org",
            "sg_event_id": "e2",
            "reason": "550 5.1.1 no such user",
            "list": "main",
            "issue": "sample",
        },
        {"event": "spamreport", "email": "grace@example.net", "sg_event_id": "e3"},
        {"event": "bounce", "type": "blocked", "email": "lin@example.com", "sg_event_id": "e4"},
        {
            "event": "group_unsubscribe",
            "email": "max@example.com",
            "sg_event_id": "e5",
            "asm_group_id": 42,
            "list": "main",
        },
        {
            "event": "dropped",
            "reason": "Bounced Address",
            "email": "alan@example.com",
            "sg_event_id": "e6",
        },
        {"event": "unsubscribe", "email": "ada@example.org", "sg_event_id": "e7"},
    )
    with live.client() as client:
        first = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
        # The same delivery again (SendGrid retries; an attacker replays within the window).
        again = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
    assert first.status_code == 200 and first.json() == {"received": 7, "new": 7}
    assert again.status_code == 200 and again.json() == {"received": 7, "new": 0}
    final = statuses(workspace)
    assert final["ada@example.org"] == "bounced"  # the later unsubscribe does not undo a bounce
    assert final["grace@example.net"] == "complained"
    assert final["lin@example.com"] == "subscribed"  # a block is temporary
    assert final["max@example.com"] == "unsubscribed"
    assert final["alan@example.com"] == "bounced"
    assert suppressions(workspace) == {
        "ada@example.org": "sendgrid: bounce",
        "grace@example.net": "sendgrid: spam report",
        "alan@example.com": "sendgrid: dropped (Bounced Address)",
    }
    store = EventStore.for_workspace(workspace / ".newsletter")
    assert store.counts("sendgrid") == {
        "bounce": 2,
        "delivered": 1,
        "dropped": 1,
        "group_unsubscribe": 1,
        "spamreport": 1,
        "unsubscribe": 1,
    }
    [bounce, unsubscribe] = store.for_email("ada@example.org")
    assert (bounce.event, bounce.list_name, bounce.issue) == ("bounce", "main", "sample")
    assert bounce.payload["reason"] == "550 5.1.1 no such user"


def test_unsigned_forged_tampered_and_stale_requests_are_refused(live, workspace, keys):
    private, _ = keys
    other, _ = key_pair()
    body = events_body({"event": "spamreport", "email": "ada@example.org", "sg_event_id": "x1"})
    now = int(time.time())
    tampered = body.replace(b"ada@", b"grace@")
    attempts = {
        "unsigned": {"Content-Type": "application/json"},
        "no timestamp": {SIGNATURE_HEADER: signed(private, body)[SIGNATURE_HEADER]},
        "other key": signed(other, body),
        "not base64": {**signed(private, body), SIGNATURE_HEADER: "%%%"},
        "stale": signed(private, body, now - 3600),
        "from the future": signed(private, body, now + 3600),
        "timestamp changed": {**signed(private, body, now - 3600), TIMESTAMP_HEADER: str(now)},
    }
    with live.client() as client:
        answers = {
            name: client.post("/webhooks/sendgrid", content=body, headers=headers)
            for name, headers in attempts.items()
        }
        answers["tampered"] = client.post(
            "/webhooks/sendgrid", content=tampered, headers=signed(private, body)
        )
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 403)
    assert all("ada@example.org" not in a.text for a in answers.values())
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    assert suppressions(workspace) == {}
    assert EventStore.for_workspace(workspace / ".newsletter").counts() == {}


def test_signed_body_that_is_not_an_event_list_is_refused(live, keys):
    private, _ = keys
    with live.client() as client:
        for body in (b"{}", b"not json", b"[1, 2]"):
            answer = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
            assert answer.status_code == 403


def test_webhook_without_a_configured_key_refuses_everything(workspace, keys):
    private, _ = keys
    body = events_body({"event": "spamreport", "email": "ada@example.org", "sg_event_id": "x"})
    with LiveServer(configure(workspace)) as live, live.client() as client:
        answer = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
    assert answer.status_code == 503
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_a_public_key_that_is_not_one_stops_the_service_from_starting():
    with pytest.raises(ConfigError, match="webhook_public_key"):
        load_public_key("bm90IGEga2V5")
    rsa = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAK"  # truncated RSA key: still not usable
    with pytest.raises(ConfigError):
        load_public_key(rsa)
    _, public = key_pair()
    pem = f"-----BEGIN PUBLIC KEY-----\n{public}\n-----END PUBLIC KEY-----\n"
    assert load_public_key(pem).curve.name == "secp256r1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"event": "open"}, None),
        ({"event": "deferred"}, None),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, None),
        ({"event": "dropped", "reason": "Invalid"}, ("bounced", None)),
        ({"event": "bounce"}, ("bounced", None)),
        ({"event": "spamreport"}, ("complained", None)),
        ({"event": "unsubscribe"}, ("unsubscribed", None)),
        ({"event": "group_unsubscribe", "asm_group_id": 7}, None),  # another group
        ({"event": "group_unsubscribe", "asm_group_id": 42}, ("unsubscribed", None)),
        (
            {"event": "group_unsubscribe", "asm_group_id": 7, "list": "main"},
            ("unsubscribed", ("main",)),
        ),
    ],
)
def test_which_events_change_lists(raw, expected):
    action = action_for(to_event({"email": "a@example.org", **raw}), asm_group_id=42)
    assert (action and (action.status, action.lists)) == expected
