"""--check-links: every link requested from a real local HTTP server that answers in all the ways."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port
from typer.testing import CliRunner

from newsletter.checks import linkcheck
from newsletter.cli import app


class LinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: LinkServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_GET(self) -> None:
        self._answer("GET")

    def _answer(self, method: str) -> None:
        server = self.server
        with server.lock:
            server.requests.append((method, self.path))
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            path = self.path
            if path.startswith("/slow"):
                time.sleep(0.3)
                self._send(200)
            elif path == "/ok":
                self._send(200)
            elif path == "/gone":
                self._send(404)
            elif path == "/no-head":  # some servers refuse HEAD but serve GET
                self._send(405 if method == "HEAD" else 200)
            elif path == "/moved":
                self.send_response(301)
                self.send_header("Location", "/ok")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/broken":
                self._send(500)
            elif path == "/hang":
                time.sleep(2)
                self._send(200)
            else:
                self._send(404)
        finally:
            with server.lock:
                server.in_flight -= 1

    def _send(self, status: int) -> None:
        body = b"ok" if status < 400 else b"no"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)


@pytest.fixture
def links():
    server = LinkServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_link_is_ok_or_broken_with_the_reason(links):
    closed = f"http://127.0.0.1:{free_port()}/nothing-listens"
    urls = [f"{links.url}/{p}" for p in ("ok", "gone", "no-head", "moved", "broken", "hang")]
    results = {r.url: r for r in linkcheck.check_links([*urls, closed], timeout=0.5)}
    assert results[f"{links.url}/ok"].ok
    assert results[f"{links.url}/moved"].ok  # redirect followed
    assert results[f"{links.url}/no-head"].ok  # HEAD refused, GET fine
    assert (results[f"{links.url}/gone"].status, results[f"{links.url}/gone"].ok) == (404, False)
    assert results[f"{links.url}/broken"].status == 500
    assert results[f"{links.url}/hang"].status is None
    assert results[f"{links.url}/hang"].error in ("no answer within 0.5 s", "timed out")
    assert results[closed].error == "connection refused"
    assert [m for m, path in links.requests if path == "/no-head"] == ["HEAD", "GET"]
    assert [m for m, path in links.requests if path == "/hang"] == ["HEAD"]  # no second wait


def test_requests_run_concurrently_but_never_more_than_the_bound(links):
    urls = [f"{links.url}/slow/{n}" for n in range(12)]
    started = time.monotonic()
    results = linkcheck.check_links(urls, workers=4)
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert [r.url for r in results] == urls
    assert 2 <= links.most_in_flight <= 4
    assert elapsed < 12 * 0.3  # not one after the other


def test_links_and_images_are_collected_once_and_generated_ones_skipped():
    html = (
        '<html><body><a href="https://a.example/x">A</a> <a href="https://a.example/x">again</a>'
        '<a href="mailto:x@example.org">mail</a> <a href="#">top</a>'
        '<img src="https://img.example/p.png" alt=""> <a href="https://me.example/unsub/1">u</a>'
        "</body></html>"
    )
    assert linkcheck.collect_links(html, skip={"https://me.example/unsub/1"}) == [
        "https://a.example/x",
        "https://img.example/p.png",
    ]


def test_preview_check_links_warns_about_broken_ones_at_their_line(workspace, links, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")
    issue = workspace / "issues" / "linked.md"
    issue.write_text(
        "---\ntitle: Links\npreheader: Some links\n---\n\n"
        f"## [A story]({links.url}/ok)\n\nText.\n\n"
        f"## [A moved story]({links.url}/gone)\n\nMore text.\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["preview", "issues/linked.md", "--check-links"])
    assert result.exit_code == 0, result.output
    assert "Links:     2 checked, 1 broken" in result.output
    broken = [line for line in result.output.splitlines() if "broken-link" in line]
    assert broken == [
        f"  {issue.relative_to(workspace)}:10: warning broken-link: {links.url}/gone: HTTP 404 Not Found"
    ]
    # The unsubscribe and view-in-browser links are the publisher's own, made at send time.
    assert not any("unsubscribe" in path for _, path in links.requests)
