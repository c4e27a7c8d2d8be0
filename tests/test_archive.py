"""`newsletter archive build` and serve's /archive/ and /feed.xml, from issues sent to the outbox."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import feedparser
import pytest
from test_serve import LiveServer, configure, send_issue, unsubscribe_url
from typer.testing import CliRunner

from newsletter.cli import app as cli_app

runner = CliRunner()
ADDRESSES = ("ada@example.org", "grace@example.net", "alan@example.com")
TOKEN_SHAPE = re.compile(r"main\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@pytest.fixture
def sent(workspace: Path) -> dict[str, list[str]]:
    """merged.md and sample.md sent, hidden.md sent with `archive: false`, elements.md a draft;
    the unsubscribe tokens the messages carried."""
    issues = workspace / "issues"
    shutil.copy(issues / "merge.md", issues / "merged.md")
    text = (issues / "merge.md").read_text(encoding="utf-8")
    hidden = text.replace("title: Merge fields", "title: Hidden\narchive: false", 1)
    (issues / "hidden.md").write_text(hidden, encoding="utf-8")
    tokens = []
    for name in ("sample", "merged", "hidden"):
        messages = send_issue(workspace, f"issues/{name}.md")
        tokens += [unsubscribe_url(m).rsplit("/", 1)[1] for m in messages.values()]
        for path in (workspace / "outbox").glob("*/*.eml"):
            path.unlink()  # so the next send_issue reads only its own messages
    assert len(tokens) == 6  # two subscribed addresses, three issues
    return {"tokens": tokens}


def assert_no_personal_data(text: str, tokens: list[str]) -> None:
    for address in ADDRESSES:
        assert address not in text
    for token in tokens:
        assert token not in text
    assert not TOKEN_SHAPE.search(text)
    assert "/unsubscribe/" not in text


def test_build_writes_sent_issues_index_newest_first_and_feed_without_personal_data(
    workspace, sent
):
    result = runner.invoke(cli_app, ["archive", "build", "--out", "site"])
    assert result.exit_code == 0, result.output
    assert "2 issues" in result.output
    site = workspace / "site"
    assert sorted(p.name for p in site.iterdir()) == [
        "feed.xml", "index.html", "merged.html", "sample.html",
    ]  # fmt: skip
    for path in site.iterdir():
        assert_no_personal_data(path.read_text(encoding="utf-8"), sent["tokens"])
    page = (site / "merged.html").read_text(encoding="utf-8")
    assert "Hi there from nowhere" in page
    assert 'href="https://news.example.org/subscribe"' in page

    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.index('href="merged.html"') < index.index('href="sample.html"')
    assert "2024-03-01" in index and "2022-01-21" in index
    assert "A short preheader" in index and "Hidden" not in index

    feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title == "Test Weekly"
    assert [e.link for e in feed.entries] == [
        "https://news.example.org/archive/merged.html",
        "https://news.example.org/archive/sample.html",
    ]
    merged = feed.entries[0]
    assert re.fullmatch(r"tag:news\.example\.org,\d{4}-\d\d-\d\d:issues/merged", merged.id)
    assert merged.title == "Merge fields" and merged.summary == "A short preheader"
    assert merged.updated_parsed is not None and feed.feed.updated_parsed is not None
    assert merged.content[0].type == "text/html"
    assert "Hi there from nowhere" in merged.content[0].value
    assert "<style" not in merged.content[0].value and "<head" not in merged.content[0].value


def test_rebuilding_keeps_ids_and_drops_an_issue_that_left_the_archive(workspace, sent):
    assert runner.invoke(cli_app, ["archive", "build"]).exit_code == 0
    site = workspace / "site"
    before = feedparser.parse((site / "feed.xml").read_bytes())
    sample = workspace / "issues" / "sample.md"
    text = sample.read_text(encoding="utf-8")
    sample.write_text(text.replace("---\n", "---\narchive: false\n", 1), encoding="utf-8")
    assert runner.invoke(cli_app, ["archive", "build"]).exit_code == 0
    after = feedparser.parse((site / "feed.xml").read_bytes())
    assert not (site / "sample.html").exists()
    assert [e.id for e in after.entries] == [before.entries[0].id]
    assert after.entries[0].updated == before.entries[0].updated


def test_archive_key_must_be_true_or_false(workspace):
    sample = workspace / "issues" / "sample.md"
    text = sample.read_text(encoding="utf-8")
    sample.write_text(text.replace("---\n", "---\narchive: maybe\n", 1), encoding="utf-8")
    result = runner.invoke(cli_app, ["preview", "issues/sample.md"])
    assert result.exit_code != 0
    assert "sample.md:2: archive: expected true or false, got 'maybe'" in result.output


def test_serve_answers_archive_index_pages_and_feed(workspace, sent):
    with LiveServer(configure(workspace)) as live, live.client() as client:
        index = client.get("/archive/")
        page = client.get("/archive/merged.html")
        old_page = client.get("/issues/merged.html")
        hidden = client.get("/archive/hidden.html")
        draft = client.get("/archive/elements.html")
        feed = client.get("/feed.xml")
    assert index.status_code == page.status_code == old_page.status_code == 200
    assert index.text.index('href="merged.html"') < index.text.index('href="sample.html"')
    assert page.text == old_page.text and "Hi there from nowhere" in page.text
    assert hidden.status_code == draft.status_code == 404
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    for text in (index.text, page.text, feed.text):
        assert_no_personal_data(text, sent["tokens"])
    parsed = feedparser.parse(feed.content)
    assert not parsed.bozo
    assert [e.link for e in parsed.entries] == [
        "https://news.example.org/archive/merged.html",
        "https://news.example.org/archive/sample.html",
    ]


def test_view_in_browser_links_point_at_the_archive(workspace, sent):
    messages = send_issue(workspace, "issues/elements.md")
    message = next(iter(messages.values()))
    html = message.get_body(("html",)).get_content()
    assert "https://news.example.org/archive/elements.html" in html
    assert "/issues/elements.html" not in html
