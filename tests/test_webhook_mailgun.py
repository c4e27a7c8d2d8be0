"""Mailgun's signed webhooks (failed, complained, unsubscribed) against the running service."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from test_serve import LiveServer, configure, statuses
from test_webhook import suppressions

from newsletter.errors import ConfigError
from newsletter.providers.mailgun.webhook import KEY_ENV, load_key, sign
from newsletter.web.events import EventStore

KEY = "key-mailgun-webhook-signing-0123456789"
ENV = {KEY_ENV: KEY}
URL = "/webhooks/mailgun"


def signed(event_data: dict, key: str = KEY, timestamp: int | None = None, token=None) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    return {
        "signature": {
            "timestamp": stamp,
            "token": token,
            "signature": sign(key.encode(), stamp, token),
        },
        "event-data": event_data,
    }


def event(kind: str, email: str, ident: str, **extra) -> dict:
    return {
        "event": kind,
        "id": ident,
        "timestamp": 1714555234.5,
        "recipient": email,
        "tags": ["sample"],
        "user-variables": {"issue": "sample", "list": "main"},
        "message": {"headers": {"message-id": "20240501093354.1.ABC@mg.example.org"}},
        **extra,
    }


def failed(email: str, ident: str, severity: str = "permanent", reason: str = "bounce") -> dict:
    status = {"code": 550, "message": "5.1.1 The email account does not exist."}
    return event("failed", email, ident, severity=severity, reason=reason, **{
        "delivery-status": status
    })  # fmt: skip


@pytest.fixture
def live(workspace: Path):
    with LiveServer(configure(workspace), env=ENV) as server:
        yield server


def post(client, body: dict):
    return client.post(
        URL, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def test_mailgun_signed_events_update_lists_and_suppressions_once(live, workspace):
    deliveries = [
        failed("Ada@Example.org", "ev-1"),
        event("complained", "grace@example.net", "ev-2"),
        event("unsubscribed", "alan@example.com", "ev-3"),
        failed("linus@example.org", "ev-4", severity="temporary"),  # Mailgun retries: recorded only
        event("delivered", "ada@example.org", "ev-5"),
    ]
    with live.client() as client:
        first = [post(client, signed(d)) for d in deliveries]
        # The same events in new, validly signed deliveries (Mailgun retrying): changed once.
        again = [post(client, signed(d)) for d in deliveries]
    assert [a.json() for a in first] == [{"received": 1, "new": 1}] * len(deliveries)
    assert [a.json() for a in again] == [{"received": 1, "new": 0}] * len(deliveries)
    final = statuses(workspace)
    assert final["ada@example.org"] == "bounced"
    assert final["grace@example.net"] == "complained"
    assert final["alan@example.com"] == "unsubscribed"
    assert suppressions(workspace) == {
        "ada@example.org": "mailgun: permanent failure",
        "grace@example.net": "mailgun: complaint",
        "alan@example.com": "mailgun: unsubscribe",
    }
    store = EventStore.for_workspace(workspace / ".newsletter")
    assert store.counts("mailgun") == {
        "complained": 1,
        "delivered": 1,
        "failed:permanent": 1,
        "failed:temporary": 1,
        "unsubscribed": 1,
    }
    stored = [e for e in store.for_email("ada@example.org") if e.event == "failed:permanent"]
    assert (stored[0].event_id, stored[0].list_name, stored[0].issue) == ("ev-1", "main", "sample")
    assert stored[0].occurred_at == "2024-05-01T09:20:34+00:00"


def test_mailgun_forged_deliveries_are_refused(live, workspace):
    good = signed(failed("ada@example.org", "ev-9"))
    wrong_key = signed(failed("ada@example.org", "ev-9"), key=KEY + "x")
    tampered = {**good, "signature": {**good["signature"], "token": "0" * 50}}
    unsigned = {"event-data": failed("ada@example.org", "ev-9")}
    no_token = {**good, "signature": {"timestamp": good["signature"]["timestamp"]}}
    with live.client() as client:
        answers = [post(client, body) for body in (wrong_key, tampered, unsigned, no_token)]
        answers.append(client.post(URL, content=b"not json"))
    assert [a.status_code for a in answers] == [403] * 5
    assert all(KEY not in a.text and "ada@" not in a.text for a in answers)
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    assert suppressions(workspace) == {}
    assert EventStore.for_workspace(workspace / ".newsletter").counts() == {}


def test_mailgun_replayed_deliveries_are_refused(live, workspace):
    captured = signed(event("complained", "grace@example.net", "ev-7"))
    # A captured delivery re-sent with other content under the same token: refused.
    altered = {**captured, "event-data": failed("ada@example.org", "ev-8")}
    stale = signed(failed("ada@example.org", "ev-6"), timestamp=int(time.time()) - 301)
    with live.client() as client:
        assert post(client, captured).json() == {"received": 1, "new": 1}
        answers = [post(client, captured), post(client, altered), post(client, stale)]
    assert [a.status_code for a in answers] == [403, 403, 403]
    final = statuses(workspace)
    assert final["grace@example.net"] == "complained"
    assert final["ada@example.org"] == "subscribed"
    assert suppressions(workspace) == {"grace@example.net": "mailgun: complaint"}


def test_mailgun_failure_reasons_that_are_not_about_the_address_are_only_recorded(live, workspace):
    with live.client() as client:
        post(client, signed(failed("ada@example.org", "ev-10", reason="old")))
        post(client, signed(failed("grace@example.net", "ev-11", reason="suppress-complaint")))
    final = statuses(workspace)
    assert final["ada@example.org"] == "subscribed"
    assert final["grace@example.net"] == "complained"


def test_mailgun_webhook_without_a_key_refuses_everything_and_a_short_key_stops_serve(workspace):
    with LiveServer(configure(workspace), env={}) as live, live.client() as client:
        answer = post(client, signed(failed("ada@example.org", "ev-1")))
    assert answer.status_code == 503
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    with pytest.raises(ConfigError, match=f"^{KEY_ENV} is not a signing key"):
        load_key({KEY_ENV: "short"})
