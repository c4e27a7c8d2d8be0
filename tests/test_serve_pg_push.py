"""`store push` of what serve kept on the files store (events, opt-in requests, the opt-out
journal) into PostgreSQL: idempotent, and opt-outs the CSV did not show yet hold there too."""

from __future__ import annotations

import psycopg
from test_serve import ONE_CLICK, LiveServer, configure, confirmations, subscribe, wait_for
from test_serve_pg import query, row, seed
from test_webhook import events_body, key_pair, signed

from newsletter.config import load_config
from newsletter.tokens import load_secret, make_token
from newsletter.web.pgpush import push_events, push_web


def test_push_copies_events_requests_and_opt_outs_once_and_applies_them(workspace, pg_url):
    from newsletter.store import migrations

    private, public = key_pair()
    secret = load_secret(workspace / ".newsletter", env={})
    body = events_body({"event": "bounce", "email": "grace@example.net", "sg_event_id": "b1"})
    server = LiveServer(configure(workspace, f'webhook_public_key = "{public}"'))
    with server as live, live.client() as client:
        unsubscribe = f"/unsubscribe/{make_token(secret, 'main', 'ada@example.org')}"
        assert client.post(unsubscribe, data=ONE_CLICK).is_success
        bounce = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
        assert bounce.is_success
        assert subscribe(client, email="lin@example.com").status_code == 200
        wait_for(lambda: confirmations(workspace))
    with psycopg.connect(pg_url) as conn:
        migrations.migrate(conn)
    seed(pg_url)  # the lists, as `store push` copies them first (the CSV still says subscribed)
    config = load_config(workspace / "newsletter.toml", env={})
    with psycopg.connect(pg_url) as conn:
        first = push_web(conn, config)
        second = push_web(conn, config)
        conn.commit()
    assert first == [
        "events: 3 kept, 3 new",  # unsubscribe, bounce, confirmation_sent
        "opt-in requests: 1 kept, 1 new",
        "opt-outs: 2 kept, 2 new",
    ]
    assert second == [
        "events: 3 kept, 0 new",
        "opt-in requests: 1 kept, 0 new",
        "opt-outs: 2 kept, 0 new",
    ]
    assert row(pg_url, "ada@example.org") == ("unsubscribed", "web:one-click")
    assert row(pg_url, "grace@example.net") == ("bounced", "sendgrid")
    assert query(pg_url, "SELECT key, reason FROM suppressions") == [
        ("grace@example.net", "sendgrid: bounce")
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert push_events(conn, config) == "events: 3 kept, 0 new"
