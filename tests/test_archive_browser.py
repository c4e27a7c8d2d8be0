"""The archive in a real browser (headless Chromium): three sent issues, one draft.

The static site from `archive build` opened from disk, and serve's /archive/, as a reader
finds them: the index newest first, each issue's page, the feed linked, no draft and no
reader's address or token anywhere on the pages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import feedparser
import pytest
from test_archive import ADDRESSES, TOKEN_SHAPE
from test_serve import LiveServer, configure, send_issue, unsubscribe_url
from test_serve_browser import CHROMIUM, launch
from typer.testing import CliRunner

from newsletter.cli import app as cli_app

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="no system chromium")

# Newest first, as the index lists them.
TITLES = ["Third issue", "Merge fields", "NATO Weekly Roundup – Week of January 21st"]


@pytest.fixture
def three_sent(workspace: Path) -> list[str]:
    """sample.md, merge.md and third.md sent; elements.md a draft. The tokens mailed."""
    issues = workspace / "issues"
    third = (issues / "merge.md").read_text(encoding="utf-8")
    third = third.replace("title: Merge fields", "title: Third issue", 1)
    (issues / "third.md").write_text(third.replace("date: 2024-03-01", "date: 2024-04-01", 1))
    tokens = []
    for name in ("sample", "merge", "third"):
        messages = send_issue(workspace, f"issues/{name}.md")
        tokens += [unsubscribe_url(m).rsplit("/", 1)[1] for m in messages.values()]
        for path in (workspace / "outbox").glob("*/*.eml"):
            path.unlink()
    return tokens


def assert_nothing_personal(html: str, tokens: list[str]) -> None:
    for address in ADDRESSES:
        assert address not in html
    for token in tokens:
        assert token not in html
    assert not TOKEN_SHAPE.search(html) and "/unsubscribe/" not in html


def read_archive(page, index_url: str, tokens: list[str]) -> None:
    """Open the index, check it, then follow each issue's link and come back."""
    from playwright.sync_api import expect

    page.goto(index_url)
    expect(page).to_have_title("Test Weekly: archive")
    links = page.locator("ol h2 a")
    expect(links).to_have_text(TITLES)
    assert page.locator("ol time").all_inner_texts() == ["2024-04-01", "2024-03-01", "2022-01-21"]
    feed = page.locator('link[rel="alternate"][type="application/atom+xml"]')
    assert feed.get_attribute("href").endswith("feed.xml")
    assert "Every element" not in page.content()  # the draft
    assert_nothing_personal(page.content(), tokens)
    for title in TITLES:
        page.get_by_role("link", name=title).click()
        page.wait_for_load_state()
        assert_nothing_personal(page.content(), tokens)
        if title != TITLES[2]:
            expect(page.get_by_text("Hi there from nowhere").first).to_be_visible()
        # The web version fits a phone: nothing wider than the window.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"]
        page.go_back()
        expect(page.locator("ol h2 a")).to_have_text(TITLES)


def test_the_built_archive_reads_in_a_browser_from_disk(workspace, three_sent):
    from playwright.sync_api import sync_playwright

    result = CliRunner().invoke(cli_app, ["archive", "build", "--out", "site"])
    assert result.exit_code == 0, result.output
    site = workspace / "site"
    assert sorted(p.name for p in site.glob("*.html")) == [
        "index.html", "merge.html", "sample.html", "third.html",
    ]  # fmt: skip
    feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert not feed.bozo and [e.title for e in feed.entries] == TITLES
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            read_archive(page, (site / "index.html").as_uri(), three_sent)
        finally:
            browser.close()


def test_serve_archive_reads_in_a_browser(workspace, three_sent):
    from playwright.sync_api import sync_playwright

    with LiveServer(configure(workspace)) as live, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            read_archive(page, live.public_url + "/archive/", three_sent)
            answer = page.goto(live.public_url + "/feed.xml")
            assert answer.status == 200
            feed = feedparser.parse(answer.body())
            assert [e.title for e in feed.entries] == TITLES
            draft = page.goto(live.public_url + "/archive/elements.html")
            assert draft.status == 404
        finally:
            browser.close()
