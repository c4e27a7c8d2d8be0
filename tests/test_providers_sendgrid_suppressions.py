"""`newsletter subscribers sync` against a loopback server speaking SendGrid's suppression API."""

from __future__ import annotations

import csv
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from newsletter import subscribers as subs
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.errors import ProviderError
from newsletter.providers.sendgrid.suppressions import (
    SuppressionClient,
    parse_since,
    sync_suppressions,
)

API_KEY = "SG.sync-test-key"
T0 = 1_700_000_000  # created times of the entries below


class SuppressionServer:
    """GET /v3/suppression/<kind> (limit/offset/start_time) and /v3/asm/suppressions."""

    def __init__(self, data: dict[str, list[dict]], groups: list[dict]) -> None:
        self.data = data
        self.groups = groups
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.rate_limited = 0  # answer this many requests with 429 first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                outer.requests.append((parts.path, query))
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self.answer(
                        401, {"errors": [{"field": None, "message": "authorization required"}]}
                    )
                if outer.rate_limited:
                    outer.rate_limited -= 1
                    return self.answer(
                        429,
                        {"errors": [{"message": "too many requests"}]},
                        {"X-RateLimit-Reset": str(int(time.time()) + 1)},
                    )
                if parts.path == "/v3/asm/suppressions":
                    return self.answer(200, outer.groups)
                kind = parts.path.removeprefix("/v3/suppression/")
                if kind not in outer.data:
                    return self.answer(404, {"errors": [{"message": "not found"}]})
                limit = min(int(query.get("limit", 500)), 500)
                offset = int(query.get("offset", 0))
                since = int(query.get("start_time", 0))
                rows = [r for r in outer.data[kind] if r["created"] >= since]
                return self.answer(200, rows[offset : offset + limit])

            def answer(self, status, body, headers=None):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SuppressionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def entries(prefix: str, count: int, start: int = T0, **extra) -> list[dict]:
    return [
        {"email": f"{prefix}{i:04d}@example.com", "created": start + i, **extra}
        for i in range(count)
    ]


@pytest.fixture
def sendgrid():
    data = {
        "bounces": entries("bounce", 1203, reason="550 no such user", status="5.1.1"),
        "blocks": entries("block", 2, reason="blocked", status="4.0.0"),
        "spam_reports": [
            *entries("spam", 1, ip="10.0.0.1"),
            {"email": "bounce0000@example.com", "created": T0, "ip": ""},
        ],
        "invalid_emails": [
            {"email": "not an address", "created": T0, "reason": "Mail domain invalid"},
            *entries("invalid", 1),
        ],
        "unsubscribes": [{"email": "Ada@Example.org", "created": T0 + 5000}],
    }
    groups = [
        {"email": "grace@example.net", "group_id": 42, "group_name": "Weekly", "created_at": T0},
        {"email": "other@example.com", "group_id": 7, "group_name": "Receipts", "created_at": T0},
    ]
    with SuppressionServer(data, groups) as server:
        yield server


def use_server(root: Path, url: str) -> None:
    path = root / "newsletter.toml"
    path.write_text(path.read_text() + f'\n[sendgrid]\nhost = "{url}"\nasm_group_id = 42\n')


def suppressed(root: Path) -> dict[str, str]:
    with subs.suppressions_path(root / "subscribers").open(newline="", encoding="utf-8") as h:
        return {row["email"]: row["reason"] for row in csv.DictReader(h)}


def test_sync_pulls_every_kind_page_by_page_into_suppressions(workspace, sendgrid):
    use_server(workspace, sendgrid.url)
    config = load_config(workspace / "newsletter.toml", env={})
    sendgrid.rate_limited = 1
    waits: list[float] = []
    client = SuppressionClient(config, {"SENDGRID_API_KEY": API_KEY}, sleep=waits.append)
    report = sync_suppressions(config, client=client)
    assert report.found == {
        "bounces": 1203,
        "blocks": 2,
        "spam_reports": 2,
        "invalid_emails": 2,
        "unsubscribes": 1,
        "group_unsubscribes": 1,
    }
    assert report.added == {
        "bounces": 1203,
        "blocks": 2,
        "spam_reports": 1,
        "invalid_emails": 1,
        "unsubscribes": 1,
        "group_unsubscribes": 1,
    }
    assert report.skipped == 1
    assert len(waits) == 1 and 0 < waits[0] <= 60
    offsets = [q["offset"] for p, q in sendgrid.requests if p.endswith("/bounces")]
    assert offsets == ["0", "0", "500", "1000"]  # the first try was rate-limited
    rows = suppressed(workspace)
    assert rows["bounce1202@example.com"] == "sendgrid: bounce"
    assert rows["Ada@Example.org"] == "sendgrid: unsubscribe"
    assert rows["grace@example.net"] == "sendgrid: group unsubscribe"
    assert "other@example.com" not in rows  # another unsubscribe group
    # The list keeps its rows; sending skips suppressed addresses.
    assert [s.email for s in subs.sendable(workspace / "subscribers", "main")] == []


def test_sync_twice_adds_nothing_new(workspace, sendgrid):
    use_server(workspace, sendgrid.url)
    config = load_config(workspace / "newsletter.toml", env={})
    env = {"SENDGRID_API_KEY": API_KEY}
    sync_suppressions(config, env=env)
    again = sync_suppressions(config, env=env)
    assert sum(again.added.values()) == 0 and again.found["bounces"] == 1203


def test_cli_sync_since_a_date_reports_counts(workspace, sendgrid, monkeypatch):
    use_server(workspace, sendgrid.url)
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + 1200))
    result = CliRunner().invoke(app, ["subscribers", "sync", "--since", since])
    assert result.exit_code == 0, result.output
    assert {q.get("start_time") for p, q in sendgrid.requests if "/suppression/" in p} == {
        str(T0 + 1200)
    }
    lines = result.output.splitlines()
    assert lines[0].split() == ["bounces", "3", "found,", "3", "new"]
    assert lines[-1] == "Added 4 suppressions to subscribers/suppressions.csv."
    assert "SG." not in result.output


def test_cli_sync_errors_are_one_line_with_the_right_exit_code(workspace, sendgrid, monkeypatch):
    use_server(workspace, sendgrid.url)
    runner = CliRunner()
    missing = runner.invoke(app, ["subscribers", "sync"])
    assert missing.exit_code == 3
    assert "SENDGRID_API_KEY is not set" in missing.output
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    refused = runner.invoke(app, ["subscribers", "sync"])
    assert refused.exit_code == 5
    assert refused.output.strip().splitlines()[-1] == (
        "Error: SendGrid /v3/suppression/bounces answered 401: authorization required; "
        "check that SENDGRID_API_KEY is right and has the Suppressions read permission"
    )
    assert "SG.wrong" not in refused.output
    bad_date = runner.invoke(app, ["subscribers", "sync", "--since", "last tuesday"])
    assert bad_date.exit_code == 2


def test_sync_names_an_unreachable_host(workspace):
    from conftest import free_port

    use_server(workspace, f"http://127.0.0.1:{free_port()}")
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(ProviderError, match="cannot reach http://127.0.0.1"):
        sync_suppressions(config, env={"SENDGRID_API_KEY": API_KEY})


def test_since_accepts_dates_times_and_unix_seconds():
    assert parse_since("2024-05-01") == 1714521600
    assert parse_since("2024-05-01T02:00+02:00") == 1714521600
    assert parse_since("1714521600") == 1714521600
    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_cli_sync_on_postgresql_puts_the_suppressions_in_the_store(
    pg_workspace, sendgrid, monkeypatch
):
    from newsletter.store import lists

    use_server(pg_workspace, sendgrid.url)
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    runner = CliRunner()
    assert runner.invoke(app, ["store", "push"]).exit_code == 0
    result = runner.invoke(app, ["subscribers", "sync"])
    assert result.exit_code == 0, result.output
    config = load_config(pg_workspace / "newsletter.toml")
    reasons = lists.suppression_reasons(config)
    assert result.output.splitlines()[-1] == (
        f"Added {len(reasons):,} suppressions to the PostgreSQL store's suppressions."
    )
    assert not subs.suppressions_path(pg_workspace / "subscribers").exists()
    assert reasons["ada@example.org"] == "sendgrid: unsubscribe"
    assert reasons["grace@example.net"] == "sendgrid: group unsubscribe"
    assert [s.email for s in lists.sendable(config, "main")] == []
    again = runner.invoke(app, ["subscribers", "sync"])
    assert again.output.splitlines()[-1] == (
        "Added 0 suppressions to the PostgreSQL store's suppressions."
    )
