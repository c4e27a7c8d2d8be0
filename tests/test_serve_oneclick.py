"""RFC 8058 one-click POSTs are answered in front of Starlette (web.oneclick): the same answer
as the `/unsubscribe/{token}` route, recorded before it, behind the same guards; on both stores.

A POST whose body is exactly `List-Unsubscribe=One-Click` takes the fast path; the same POST
with any other body that still says one-click (`...&`, multipart) goes to the route, so each
test sends both and compares them. Real `serve` over loopback HTTP, raw sockets where the
request must be exactly so.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from test_serve import LiveServer, configure, statuses
from test_serve_pg import pg_config, row, seed

from newsletter import optouts
from newsletter.tokens import load_secret, make_token
from newsletter.web.app import create_app
from newsletter.web.events import EventStore
from newsletter.web.service import FORM_LIMIT

FAST = b"List-Unsubscribe=One-Click"
ROUTED = b"List-Unsubscribe=One-Click&"  # one-click too, but not RFC 8058's exact body
HOST = "news.example.org"
COOKIE = "nl_csrf=a-cookie-of-this-browser"


@pytest.fixture(params=["files", "postgres"])
def served(request) -> tuple[str, Path, object]:
    """(store, workspace, its config) on each store."""
    if request.param == "files":
        root = request.getfixturevalue("workspace")
        return "files", root, configure(root)
    root = request.getfixturevalue("pg_workspace")
    url = request.getfixturevalue("pg_url")
    seed(url)
    return url, root, pg_config(root, url)


def link(root: Path, address: str) -> str:
    secret = load_secret(root / ".newsletter", env={})
    return f"/unsubscribe/{make_token(secret, 'main', address)}"


def exchange(port: int, request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """One raw HTTP/1.1 exchange: (status, headers in order, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines]
    return int(status_line.split()[1]), headers, body


def post(
    port: int, path: str, body: bytes, *, host: str = HOST, cookie: str | None = None, extra=""
) -> tuple[int, list[tuple[str, str]], bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + (extra or f"Content-Length: {len(body)}\r\n")
        + "Connection: close\r\n\r\n"
    )
    return exchange(port, head.encode() + body)


def without_date(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n.lower(), v) for n, v in headers if n.lower() != "date"]


def unsubscribed(store: str, root: Path, address: str) -> bool:
    if store == "files":
        return statuses(root)[address] == "unsubscribed"
    return row(store, address) == ("unsubscribed", "web:one-click")


def test_the_one_click_answer_is_the_routes_answer_and_is_recorded_before_it(served):
    store, root, config = served
    with LiveServer(config) as live:
        fast = post(live.port, link(root, "ada@example.org"), FAST, cookie=COOKIE)
        assert unsubscribed(store, root, "ada@example.org")  # recorded when answered
        routed = post(live.port, link(root, "grace@example.net"), ROUTED, cookie=COOKIE)
        assert unsubscribed(store, root, "grace@example.net")
        fresh = post(live.port, link(root, "ada@example.org"), FAST)
        fresh_routed = post(live.port, link(root, "ada@example.org"), ROUTED)
    assert fast[0] == routed[0] == fresh[0] == fresh_routed[0] == 200
    assert without_date(fast[1]) == without_date(routed[1])  # the security headers included
    assert {"x-content-type-options", "referrer-policy", "x-frame-options"} <= {
        n for n, _ in without_date(fast[1])
    }
    # A mailbox provider reads no page: a short text, the same for every link, and no CSRF
    # cookie (there is no form to post), with or without a cookie sent.
    assert fast[2] == routed[2] == fresh[2] == fresh_routed[2] == b"You are unsubscribed.\n"
    assert dict(without_date(fast[1]))["content-type"].startswith("text/plain")
    assert dict(without_date(fast[1]))["cache-control"] == "no-store"
    assert without_date(fresh[1]) == without_date(fresh_routed[1]) == without_date(fast[1])
    assert "set-cookie" not in dict(without_date(fresh[1]))


def test_one_click_posts_for_another_host_or_too_big_are_refused_as_every_route_refuses(served):
    store, root, config = served
    path = link(root, "ada@example.org")
    big = FAST + b"&" + b"x" * FORM_LIMIT
    with LiveServer(config) as live:
        for host, status in (("evil.example", 421), ("bad host!", 400)):
            refused = post(live.port, path, FAST, host=host)
            other = post(live.port, "/resubscribe/x", FAST, host=host)
            assert refused[0] == other[0] == status
            assert (without_date(refused[1]), refused[2]) == (without_date(other[1]), other[2])
        declared = post(live.port, path, big)
        chunks = [FAST[:10], FAST[10:] + b"&" + b"x" * 2048] + [b"x" * 2048] * 8
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        streamed = post(live.port, path, chunked, extra="Transfer-Encoding: chunked\r\n")
    assert declared[0] == streamed[0] == 413
    assert declared[2] == streamed[2] == b"Request body too large.\n"
    assert not unsubscribed(store, root, "ada@example.org")
    if store == "files":
        assert EventStore.for_workspace(root / ".newsletter").counts() == {}


def test_a_one_click_body_split_across_packets_is_still_one_click(served):
    store, root, config = served
    chunks = [FAST[:7], FAST[7:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    with LiveServer(config) as live:
        answer = post(
            live.port,
            link(root, "ada@example.org"),
            body,
            extra="Transfer-Encoding: chunked\r\n",
        )
    assert answer[0] == 200 and b"You are unsubscribed" in answer[2]
    assert unsubscribed(store, root, "ada@example.org")


def test_forged_and_probe_tokens_get_the_routes_answers_and_nothing_is_kept(served):
    store, root, config = served
    secret = load_secret(root / ".newsletter", env={})
    probe = f"/unsubscribe/{make_token(secret, 'main', 'doctor@example.invalid', 'probe')}"
    forged = link(root, "ada@example.org")[:-3] + "AAA"
    with LiveServer(config) as live:
        answers = {
            name: (
                post(live.port, path, FAST, cookie=COOKIE),
                post(live.port, path, ROUTED, cookie=COOKIE),
            )
            for name, path in (("probe", probe), ("forged", forged))
        }
    for fast, routed in answers.values():
        assert fast[0] == routed[0]
        assert (without_date(fast[1]), fast[2]) == (without_date(routed[1]), routed[2])
    assert answers["forged"][0][0] == 404
    assert answers["probe"][0][2] == b"One-click unsubscribe answers here.\n"
    assert not unsubscribed(store, root, "ada@example.org")
    if store == "files":
        assert (
            optouts.Journal.existing(root / ".newsletter") is None
            or not optouts.Journal(root / ".newsletter").unsubscribes()
        )


def test_one_clicks_waiting_are_kept_while_the_event_loop_is_busy(served):
    """A burst keeps the event loop reading requests; the worker keeping one batch goes on to
    the next without waiting for the loop, so the last of a burst is not held behind it."""
    store, root, config = served
    app = create_app(config)
    sent: dict[str, list] = {}

    async def one_click(address: str) -> None:
        path = link(root, address)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 50000),
            "headers": [
                (b"host", HOST.encode()),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(FAST)).encode()),
            ],
        }

        async def receive():
            return {"type": "http.request", "body": FAST, "more_body": False}

        async def send(message):
            sent.setdefault(address, []).append(message)

        await app(scope, receive, send)

    async def burst() -> bool:
        first = asyncio.ensure_future(one_click("ada@example.org"))
        second = asyncio.ensure_future(one_click("grace@example.net"))
        for _ in range(20):  # both read and handed over: the first is being kept
            await asyncio.sleep(0)
        # The loop is busy (as reading a burst keeps it) and runs none of its callbacks.
        deadline = time.monotonic() + 5
        while not unsubscribed(store, root, "grace@example.net"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        kept_meanwhile = unsubscribed(store, root, "grace@example.net")
        await asyncio.gather(first, second)
        return kept_meanwhile

    try:
        assert asyncio.run(burst())
    finally:
        if app.service.pg is not None:
            app.service.pg.db.close()
    for address in ("ada@example.org", "grace@example.net"):
        assert sent[address][0]["status"] == 200
        assert unsubscribed(store, root, address)
