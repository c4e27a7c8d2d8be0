"""`serve` on PostgreSQL: each unsubscribe, confirm or provider event is one transaction in the
database, several instances share everything, and an outage answers 503 losing nothing.

Against the real PostgreSQL server of the session (tests/pg_server.py); `seed` puts the
fixture's rows into the lists component's tables.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from test_serve import ONE_CLICK, LiveServer, confirmations, form_token, subscribe, wait_for
from test_webhook import events_body, key_pair, signed

from newsletter.config import Config, load_config
from newsletter.subscribers.model import COLUMNS
from newsletter.tokens import load_secret, make_token

ROWS = [
    ("ada@example.org", "Ada Lovelace", "subscribed"),
    ("grace@example.net", "Grace Hopper", "subscribed"),
    ("alan@example.com", "", "unsubscribed"),
]


def seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(  # the list, as `store push` makes it (the lists schema component)
            "INSERT INTO subscriber_lists (name, columns) VALUES ('main', %s) "
            "ON CONFLICT DO NOTHING",
            (list(COLUMNS),),
        )
        for position, (email, name, status) in enumerate(ROWS, start=2):
            conn.execute(
                "INSERT INTO subscribers (list, key, email, name, status, updated_at, source, "
                "position) VALUES ('main', %s, %s, %s, %s, '2024-01-01T00:00:00+00:00', "
                "'import', %s) ON CONFLICT DO NOTHING",
                (email, email, name, status, position),
            )


def pg_config(root: Path, url: str, serve: str = "") -> Config:
    path = root / "newsletter.toml"
    if serve and "[serve]" not in path.read_text():
        path.write_text(path.read_text() + "\n[serve]\n" + serve + "\n")
    return load_config(path, env={"NEWSLETTER_STORE_URL": url})


def query(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def row(url: str, email: str) -> tuple[str, str]:
    [found] = query(url, "SELECT status, source FROM subscribers WHERE key = %s", email)
    return found


@pytest.fixture
def store(pg_workspace: Path, pg_url: str) -> str:
    seed(pg_url)
    return pg_url


def link(root: Path, address: str, purpose: str = "unsubscribe") -> str:
    secret = load_secret(root / ".newsletter", env={})
    return f"/{purpose}/{make_token(secret, 'main', address)}"


def test_one_click_unsubscribe_changes_the_row_and_records_it_in_postgres(pg_workspace, store):
    csv_before = (pg_workspace / "subscribers" / "main.csv").read_bytes()
    with LiveServer(pg_config(pg_workspace, store)) as live, live.client() as client:
        answer = client.post(link(pg_workspace, "ada@example.org"), data=ONE_CLICK)
        assert answer.status_code == 200 and "You are unsubscribed" in answer.text
        assert row(store, "ada@example.org") == ("unsubscribed", "web:one-click")
        assert row(store, "grace@example.net")[0] == "subscribed"
        assert query(store, "SELECT list, key, via FROM web_unsubscribes") == [
            ("main", "ada@example.org", "one-click")
        ]
        assert query(store, "SELECT source, event, email FROM web_events") == [
            ("web", "unsubscribe", "ada@example.org")
        ]
        # The undo: the link's page (a mailbox provider's one-click is answered with no page),
        # its button, and "subscribe me again" on the page that answers.
        action, token = form_token(client.get(link(pg_workspace, "ada@example.org")).text)
        action, token = form_token(client.post(action, data={"csrf": token}).text)
        back = client.post(action, data={"csrf": token})
        assert back.status_code == 200 and "Welcome back" in back.text
    assert row(store, "ada@example.org") == ("subscribed", "web:resubscribe")
    assert query(store, "SELECT count(*) FROM web_unsubscribes") == [(0,)]
    # Nothing went to the files store.
    state = pg_workspace / ".newsletter"
    assert not (state / "optouts.sqlite3").exists() and not (state / "events.sqlite3").exists()
    assert (pg_workspace / "subscribers" / "main.csv").read_bytes() == csv_before


def test_subscribe_and_confirm_on_postgres(pg_workspace, store):
    with LiveServer(pg_config(pg_workspace, store)) as live, live.client() as client:
        assert subscribe(client, email="Lin@Example.com", name="Lin Yu").status_code == 200
        [message] = wait_for(lambda: confirmations(pg_workspace))
        assert row(store, "lin@example.com") == ("pending", "web")
        assert query(store, "SELECT count(*) FROM web_optin_requests") == [(1,)]
        text = message.get_body(("plain",)).get_content()
        confirm = re.search(r"https://news\.example\.org(/confirm/\S+)", text).group(1)
        page = client.get(confirm)
        assert row(store, "lin@example.com")[0] == "pending"  # opening the link is not consent
        action, token = form_token(page.text)
        done = client.post(action, data={"csrf": token})
        assert done.status_code == 200 and "You are subscribed" in done.text
        again = client.post(action, data={"csrf": token})  # a second press changes nothing
        assert again.status_code == 200
    assert row(store, "lin@example.com") == ("subscribed", "web")
    [(confirmed,)] = query(store, "SELECT confirmed_at IS NOT NULL FROM web_optin_requests")
    assert confirmed
    kinds = sorted(r[0] for r in query(store, "SELECT event FROM web_events"))
    assert kinds == ["confirm", "confirmation_sent"]


def test_webhook_bounce_on_postgres_changes_rows_and_suppressions_in_one_go(pg_workspace, store):
    private, public = key_pair()
    config = pg_config(pg_workspace, store, f'webhook_public_key = "{public}"')
    body = events_body(
        {"event": "bounce", "email": "Ada@Example.org", "sg_event_id": "b1"},
        {"event": "delivered", "email": "grace@example.net", "sg_event_id": "d1"},
    )
    with LiveServer(config) as live, live.client() as client:
        first = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
        again = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
    assert first.status_code == 200 and first.json() == {"received": 2, "new": 2}
    assert again.json() == {"received": 2, "new": 0}
    assert row(store, "ada@example.org") == ("bounced", "sendgrid")
    assert row(store, "grace@example.net")[0] == "subscribed"
    assert query(store, "SELECT key, reason FROM suppressions") == [
        ("ada@example.org", "sendgrid: bounce")
    ]
    assert query(store, "SELECT key, status FROM web_actions") == [("ada@example.org", "bounced")]
    assert query(store, "SELECT count(*) FROM web_events WHERE source = 'sendgrid'") == [(2,)]


def test_two_instances_share_the_rate_limit_and_each_others_unsubscribes(pg_workspace, store):
    config = pg_config(pg_workspace, store, "subscribe_per_ip_per_hour = 3")
    with LiveServer(config) as one, LiveServer(config) as two:
        with one.client() as a, two.client() as b:
            assert subscribe(a, email="x1@example.com").status_code == 200
            assert subscribe(b, email="x2@example.com").status_code == 200
            assert subscribe(a, email="x3@example.com").status_code == 200
            assert subscribe(b, email="x4@example.com").status_code == 429  # 4th, either one
            assert subscribe(a, email="x5@example.com").status_code == 429

            answer = a.post(link(pg_workspace, "ada@example.org"), data=ONE_CLICK)
            assert answer.status_code == 200
            assert b.post(link(pg_workspace, "grace@example.net"), data=ONE_CLICK).is_success
            # The proxy sends the press of "subscribe me again" on A's page to instance two.
            action, token = form_token(a.get(link(pg_workspace, "ada@example.org")).text)
            action, token = form_token(a.post(action, data={"csrf": token}).text)
            b.cookies.update(a.cookies)
            back = b.post(action, data={"csrf": token})
            assert back.status_code == 200 and "Welcome back" in back.text
        counts = one.app.state.service.events.counts("web")
    # Two one-clicks and the page's button; one resubscribe.
    assert counts["unsubscribe"] == 3 and counts["resubscribe"] == 1
    assert row(store, "ada@example.org")[0] == "subscribed"
    assert row(store, "grace@example.net")[0] == "unsubscribed"


def _database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def test_an_outage_answers_503_and_loses_nothing_acknowledged(pg_workspace, store, pg_server):
    name = _database(store)
    with LiveServer(pg_config(pg_workspace, store)) as live, live.client() as client:
        assert client.post(link(pg_workspace, "ada@example.org"), data=ONE_CLICK).is_success
        with psycopg.connect(pg_server.admin, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            try:
                down = client.post(link(pg_workspace, "grace@example.net"), data=ONE_CLICK)
                assert down.status_code == 503 and "Please try again" in down.text
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        up = client.post(link(pg_workspace, "grace@example.net"), data=ONE_CLICK)
        assert up.status_code == 200 and "You are unsubscribed" in up.text
    assert row(store, "ada@example.org")[0] == "unsubscribed"  # acknowledged before: kept
    assert row(store, "grace@example.net")[0] == "unsubscribed"
    assert query(store, "SELECT count(*) FROM web_events WHERE event = 'unsubscribe'") == [(2,)]
