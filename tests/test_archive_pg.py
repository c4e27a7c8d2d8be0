"""The archive on the PostgreSQL store: an issue is published once the store's shared ledger
has it sent (whichever machine sent it), in `archive build` and in serve's /archive/ and feed.

Against the real PostgreSQL server of the session (conftest.pg_workspace).
"""

from __future__ import annotations

import feedparser
from pg_server import push_files
from test_report_pg import pg_config
from test_serve import LiveServer
from typer.testing import CliRunner

from newsletter.cli import app as cli_app

runner = CliRunner()


def test_an_issue_sent_on_postgresql_is_in_the_built_archive_and_served(pg_workspace, pg_url):
    push_files(pg_workspace)
    sent = runner.invoke(cli_app, ["send", "issues/merge.md", "--yes"])
    assert sent.exit_code == 0, sent.output
    assert not (pg_workspace / ".newsletter" / "ledger.sqlite3").exists()

    built = runner.invoke(cli_app, ["archive", "build", "--out", "site"])
    assert built.exit_code == 0, built.output
    assert "1 issue" in built.output
    site = pg_workspace / "site"
    assert sorted(p.name for p in site.iterdir()) == ["feed.xml", "index.html", "merge.html"]
    assert "Hi there from nowhere" in (site / "merge.html").read_text(encoding="utf-8")
    assert 'href="merge.html"' in (site / "index.html").read_text(encoding="utf-8")

    with LiveServer(pg_config(pg_workspace, pg_url)) as live, live.client() as client:
        index = client.get("/archive/")
        page = client.get("/archive/merge.html")
        draft = client.get("/archive/sample.html")  # never sent: not published
        feed = client.get("/feed.xml")
    assert index.status_code == page.status_code == feed.status_code == 200
    assert 'href="merge.html"' in index.text and 'href="sample.html"' not in index.text
    assert "Hi there from nowhere" in page.text
    assert draft.status_code == 404
    parsed = feedparser.parse(feed.content)
    assert [e.link for e in parsed.entries] == ["https://news.example.org/archive/merge.html"]
