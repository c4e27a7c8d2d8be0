"""Many one-click unsubscribes at once on PostgreSQL: written together (web.pgunsub), each one
kept, each row changed and each request's event recorded, the same link twice included.

Real `serve` over loopback HTTP against the session's PostgreSQL server.
"""

from __future__ import annotations

import concurrent.futures

import httpx
import psycopg
from test_serve import ONE_CLICK, LiveServer
from test_serve_pg import pg_config, query, row, seed

from newsletter.tokens import load_secret, make_token

PEOPLE = [f"reader{i:03d}@example.org" for i in range(200)]


def test_two_hundred_one_click_unsubscribes_at_once_on_postgres_are_each_kept(pg_workspace, pg_url):
    seed(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO subscribers (list, key, email, status, position) "
            "VALUES ('main', %s, %s, 'subscribed', %s)",
            [(a, a, 10 + i) for i, a in enumerate(PEOPLE)],
        )
    secret = load_secret(pg_workspace / ".newsletter", env={})
    paths = [f"/unsubscribe/{make_token(secret, 'main', a)}" for a in PEOPLE]
    paths += paths[:5]  # five links posted twice, at the same time as the rest
    with (
        LiveServer(pg_config(pg_workspace, pg_url)) as live,
        live.client(limits=httpx.Limits(max_connections=205)) as client,
        concurrent.futures.ThreadPoolExecutor(max_workers=205) as pool,
    ):
        answers = list(pool.map(lambda p: client.post(p, data=ONE_CLICK), paths))
    assert [a.status_code for a in answers] == [200] * 205
    assert all("You are unsubscribed" in a.text for a in answers)
    assert {row(pg_url, a) for a in PEOPLE} == {("unsubscribed", "web:one-click")}
    assert row(pg_url, "ada@example.org")[0] == "subscribed"
    assert query(pg_url, "SELECT count(*), count(DISTINCT address_id) FROM web_unsubscribes") == [
        (200, 200)
    ]
    assert query(
        pg_url,
        "SELECT count(*), count(DISTINCT email), min(payload->>'via') FROM web_events "
        "WHERE event = 'unsubscribe'",
    ) == [(205, 200, "one-click")]


def test_one_click_for_a_row_added_after_serve_started_is_kept(pg_workspace, pg_url):
    seed(pg_url)
    with LiveServer(pg_config(pg_workspace, pg_url)) as live, live.client() as client:
        assert client.get("/healthz").status_code == 200
        with psycopg.connect(pg_url) as conn:  # after start: its link is not indexed yet
            conn.execute(
                "INSERT INTO subscribers (list, key, email, status, position) "
                "VALUES ('main', 'late@example.org', 'late@example.org', 'subscribed', 99)"
            )
        secret = load_secret(pg_workspace / ".newsletter", env={})
        token = make_token(secret, "main", "late@example.org")
        answer = client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
        assert answer.status_code == 200 and "You are unsubscribed" in answer.text
        forged = client.post(f"/unsubscribe/{token[:-2]}xx", data=ONE_CLICK)
        assert forged.status_code == 404
    assert row(pg_url, "late@example.org") == ("unsubscribed", "web:one-click")
    assert query(pg_url, "SELECT count(*) FROM web_events WHERE email = 'late@example.org'") == [
        (1,)
    ]
