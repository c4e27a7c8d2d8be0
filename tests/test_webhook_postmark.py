"""Postmark's bounce, spam complaint and subscription webhooks against the running service."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_serve import LiveServer, configure, statuses
from test_webhook import suppressions

from newsletter import subscribers as subs
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.providers.postmark.webhook import PASSWORD_ENV, Credentials
from newsletter.web.events import EventStore

PASSWORD = "pm-webhook-password-0123456789"
ENV = {PASSWORD_ENV: PASSWORD}
URL = "/webhooks/postmark"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


AUTH = basic("postmark", PASSWORD)


def bounce(email: str, ident: int, kind: str = "HardBounce", **extra) -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": ident,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "sample",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"issue": "sample", "list": "main", "recipient": "abc"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account does not exist.",
        "Email": email,
        "From": "news@example.org",
        "BouncedAt": "2024-05-01T09:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Sample",
        "Content": "Return-Path: <>\r\n...the whole bounce message...",
        **extra,
    }


def complaint(email: str, ident: int) -> dict:
    return {
        **bounce(email, ident, "SpamComplaint", TypeCode=512, Name="Spam complaint"),
        "RecordType": "SpamComplaint",
    }


def subscription_change(email: str, suppress: bool, reason: str | None) -> dict:
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": "a4909a96-73d6-4c49-b148-a54522d3f70a",
        "ServerID": 123456,
        "MessageStream": "broadcast",
        "ChangedAt": "2024-05-02T10:53:34.416071Z",
        "Recipient": email,
        "Origin": "Recipient",
        "SuppressSending": suppress,
        "SuppressionReason": reason,
        "Tag": "sample",
        "Metadata": {"issue": "sample", "list": "main"},
    }


@pytest.fixture
def live(workspace: Path):
    with LiveServer(configure(workspace), env=ENV) as server:
        yield server


def post(client, event: dict, headers=AUTH):
    return client.post(URL, content=json.dumps(event).encode(), headers=headers)


def test_postmark_events_update_lists_and_suppressions_once(live, workspace):
    subs.add_subscriber(workspace / "subscribers", "main", "lin@example.com")
    subs.add_subscriber(workspace / "subscribers", "main", "max@example.com")
    subs.add_subscriber(workspace / "subscribers", "main", "joan@example.com")
    events = [
        bounce("Ada@Example.org", 101),
        complaint("grace@example.net", 102),
        bounce("lin@example.com", 103, "SoftBounce", Inactive=False),
        subscription_change("max@example.com", True, "ManualSuppression"),
        subscription_change("joan@example.com", False, None),  # reactivated: recorded only
        {
            "RecordType": "Delivery",
            "Recipient": "alan@example.com",
            "MessageID": "m1",
            "DeliveredAt": "2024-05-01T09:00:00Z",
        },  # fmt: skip
    ]
    with live.client() as client:
        first = [post(client, e) for e in events]
        # The same deliveries again: Postmark retries, or someone replays a captured one.
        again = [post(client, e) for e in events]
    assert [a.json() for a in first] == [{"received": 1, "new": 1}] * len(events)
    assert [a.json() for a in again] == [{"received": 1, "new": 0}] * len(events)
    final = statuses(workspace)
    assert final["ada@example.org"] == "bounced"
    assert final["grace@example.net"] == "complained"
    assert final["lin@example.com"] == "subscribed"  # a soft bounce is temporary
    assert final["max@example.com"] == "unsubscribed"
    assert final["joan@example.com"] == "subscribed"
    assert suppressions(workspace) == {
        "ada@example.org": "postmark: hard bounce",
        "grace@example.net": "postmark: spam complaint",
        "max@example.com": "postmark: unsubscribe",
    }
    store = EventStore.for_workspace(workspace / ".newsletter")
    assert store.counts("postmark") == {
        "Bounce:HardBounce": 1,
        "Bounce:SoftBounce": 1,
        "Delivery": 1,
        "SpamComplaint": 1,
        "SubscriptionChange": 2,
    }
    [stored] = store.for_email("ada@example.org")
    assert (stored.event_id, stored.list_name, stored.issue) == ("Bounce:101", "main", "sample")
    assert stored.occurred_at == "2024-05-01T09:33:54+00:00"
    assert "Content" not in stored.payload and stored.payload["Details"].startswith("smtp;550")


def test_a_replayed_bounce_with_other_content_but_the_same_id_changes_nothing(live, workspace):
    with live.client() as client:
        assert post(client, bounce("ada@example.org", 7)).json()["new"] == 1
        replay = post(client, bounce("grace@example.net", 7))
    assert replay.json() == {"received": 1, "new": 0}
    assert statuses(workspace)["grace@example.net"] == "subscribed"


def test_forged_and_malformed_credentials_are_refused(live, workspace):
    event = complaint("ada@example.org", 9)
    attempts = {
        "none": {"Content-Type": "application/json"},
        "wrong password": basic("postmark", PASSWORD + "x"),
        "wrong user": basic("sendgrid", PASSWORD),
        "password only": {"Authorization": "Basic " + base64.b64encode(PASSWORD.encode()).decode()},
        "not base64": {"Authorization": "Basic %%%"},
        "bearer": {"Authorization": f"Bearer {PASSWORD}"},
    }
    with live.client() as client:
        answers = {name: post(client, event, headers) for name, headers in attempts.items()}
    assert {n: a.status_code for n, a in answers.items()} == dict.fromkeys(answers, 403)
    assert all(PASSWORD not in a.text and "ada@" not in a.text for a in answers.values())
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    assert suppressions(workspace) == {}
    assert EventStore.for_workspace(workspace / ".newsletter").counts() == {}


def test_authenticated_body_that_is_not_an_event_is_refused(live):
    with live.client() as client:
        for body in (b"[]", b"not json", b'{"Email": "ada@example.org"}'):
            assert client.post(URL, content=body, headers=AUTH).status_code == 400


def test_postmark_webhook_without_a_password_refuses_everything(workspace):
    with LiveServer(configure(workspace), env={}) as live, live.client() as client:
        answer = post(client, complaint("ada@example.org", 1))
    assert answer.status_code == 503
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_postmark_webhook_only_from_allowed_addresses_when_they_are_set(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text() + '\n[postmark]\nwebhook_allow_ips = ["3.134.147.250"]\n')
    with LiveServer(configure(workspace), env=ENV) as live, live.client() as client:
        answer = post(client, complaint("ada@example.org", 1))  # from 127.0.0.1
    assert answer.status_code == 403
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_short_password_or_bad_allow_list_stops_the_service_from_starting(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(ConfigError, match=f"^{PASSWORD_ENV} is shorter than 16 characters"):
        Credentials.load(config, {PASSWORD_ENV: "short"})
    bad = load_config(
        workspace / "newsletter.toml", env={"NEWSLETTER_POSTMARK_WEBHOOK_ALLOW_IPS": "3.1.2,x"}
    )
    with pytest.raises(ConfigError, match=r"webhook_allow_ips: '3.1.2' is not an IP"):
        Credentials.load(bad, ENV)
    assert PASSWORD not in repr(Credentials.load(config, ENV))
