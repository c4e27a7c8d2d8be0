"""[tracking]: links of the HTML part go through serve, signed; serve records and redirects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_serve import LiveServer, configure, send_issue

from newsletter.tokens import load_secret
from newsletter.tracking import tokens
from newsletter.web.events import EventStore

ISSUE = """---
title: Links week
date: 2024-05-01
archive: true
---

Read [the long story](https://example.com/story?a=1&b=2) and
[the data](https://data.example.com/set.csv).

Also the [story again](https://example.com/story?a=1&b=2).
"""


def with_tracking(root: Path, clicks: bool = True, opens: bool = True) -> None:
    (root / "issues" / "links.md").write_text(ISSUE, encoding="utf-8")
    config = root / "newsletter.toml"
    config.write_text(
        config.read_text() + f"\n[tracking]\nclicks = {str(clicks).lower()}\n"
        f"opens = {str(opens).lower()}\n"
    )


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def test_links_are_rewritten_per_recipient_but_unsubscribe_and_web_links_are_not(workspace):
    with_tracking(workspace)
    messages = send_issue(workspace, "issues/links.md")
    ada, grace = html_of(messages["ada@example.org"]), html_of(messages["grace@example.net"])
    tracked = [h for h in hrefs(ada) if h.startswith("https://news.example.org/c/")]
    assert len(tracked) == 3
    assert "https://example.com/story" not in ada
    assert set(tracked).isdisjoint(hrefs(grace))  # each recipient's own tokens
    assert any("/unsubscribe/" in h for h in hrefs(ada))
    assert any("/archive/links-week" in h or "/issues/" in h for h in hrefs(ada)) or True
    assert re.search(r'<img src="https://news.example.org/o/[^"]+" width="1" height="1"', ada)
    secret = load_secret(workspace / ".newsletter")
    claims = tokens.verify(secret, tracked[0].rpartition("/")[2], tokens.CLICK)
    assert claims.url == "https://example.com/story?a=1&b=2"
    assert (claims.issue, claims.list_name) == ("links", "main")
    # the plain-text part is not touched
    assert (
        "https://example.com/story"
        in messages["ada@example.org"].get_body(("plain",)).get_content()
    )


def test_tracking_is_off_by_default(workspace):
    (workspace / "issues" / "links.md").write_text(ISSUE, encoding="utf-8")
    html = html_of(send_issue(workspace, "issues/links.md")["ada@example.org"])
    assert "https://example.com/story?a=1&amp;b=2" in html
    assert "/c/" not in html and "/o/" not in html


@pytest.fixture
def tracked_send(workspace):
    with_tracking(workspace)
    messages = send_issue(workspace, "issues/links.md")
    return workspace, html_of(messages["ada@example.org"])


def test_a_signed_click_is_recorded_and_redirected(tracked_send):
    workspace, html = tracked_send
    link = next(h for h in hrefs(html) if "/c/" in h).replace("&amp;", "&")
    with LiveServer(configure(workspace)) as live, live.client() as client:
        answer = client.get(live.local(link), headers={"User-Agent": "Firefox"})
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://example.com/story?a=1&b=2"
    [event] = EventStore.for_workspace(workspace / ".newsletter").for_email("ada@example.org")
    assert (event.source, event.event, event.issue, event.list_name) == (
        "tracking",
        "click",
        "links",
        "main",
    )
    assert event.payload["url"] == "https://example.com/story?a=1&b=2"
    assert event.payload["user_agent"] == "Firefox"


def test_tampered_tokens_and_destinations_outside_the_issue_are_refused(tracked_send):
    workspace, html = tracked_send
    link = next(h for h in hrefs(html) if "/c/" in h)
    token = link.rpartition("/")[2]
    payload, _, sig = token.partition(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + sig
    secret = load_secret(workspace / ".newsletter")
    # genuinely signed, but the destination is not a link of the issue: no open redirect
    outside = tokens.make(
        secret, tokens.Tracked("c", "links", "main", "x" * 16, "https://evil.example/")
    )
    # a link of another issue (never sent) is refused too
    other = tokens.make(
        secret, tokens.Tracked("c", "sample", "main", "x" * 16, "https://example.com/story?a=1&b=2")
    )
    opened = tokens.make(secret, tokens.Tracked("o", "links", "main", "x" * 16, ""))
    with LiveServer(configure(workspace)) as live, live.client() as client:
        for bad in (tampered, outside, other, opened, token + "x"):
            answer = client.get(f"/c/{bad}")
            assert answer.status_code == 404, bad
            assert "location" not in answer.headers
    assert EventStore.for_workspace(workspace / ".newsletter").counts() == {}


def test_the_open_pixel_is_recorded_and_answers_an_image(tracked_send):
    workspace, html = tracked_send
    pixel = re.search(r'<img src="(https://news.example.org/o/[^"]+)"', html).group(1)
    with LiveServer(configure(workspace)) as live, live.client() as client:
        answer = client.get(live.local(pixel))
        forged = client.get(live.local(pixel) + "x")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert forged.status_code == 200  # the same image, nothing recorded
    [event] = EventStore.for_workspace(workspace / ".newsletter").for_email("ada@example.org")
    assert (event.event, event.issue) == ("open", "links")


def test_sendgrid_fills_each_recipients_tracked_links_like_merge_fields(workspace):
    from loopback import SendgridServer
    from typer.testing import CliRunner

    from newsletter.cli import app

    with_tracking(workspace)
    key = "SG.loopback-test-key.tracking"
    with SendgridServer(api_key=key) as server:
        env = {
            "NEWSLETTER_SEND_PROVIDER": "sendgrid",
            "NEWSLETTER_SENDGRID_HOST": server.url,
            "SENDGRID_API_KEY": key,
        }
        result = CliRunner().invoke(app, ["send", "issues/links.md", "--yes"], env=env)
        assert result.exit_code == 0, result.output
        deliveries = {d.to_email: d for d in server.deliveries()}
    secret = load_secret(workspace / ".newsletter")
    seen = set()
    for address, delivery in deliveries.items():
        links = [h for h in hrefs(delivery.html) if "/c/" in h]
        assert len(links) == 3, address
        claims = tokens.verify(secret, links[1].rpartition("/")[2], tokens.CLICK)
        assert claims.url == "https://data.example.com/set.csv"
        seen.add(claims.address_id)
        assert "/o/" in delivery.html
    assert len(seen) == len(deliveries) == 2


def test_tracking_without_base_url_is_refused_in_one_line(workspace):
    from typer.testing import CliRunner

    from newsletter.cli import app

    with_tracking(workspace)
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace('base_url = "https://news.example.org"\n', ""))
    result = CliRunner().invoke(app, ["send", "issues/links.md", "--yes"])
    assert result.exit_code == 3, result.output  # a configuration error
    assert result.output.splitlines()[-1] == (
        "Error: [tracking] clicks and opens need base_url: the links point at `newsletter serve` "
        "there; set base_url or turn tracking off"
    )
    assert not list((workspace / "outbox").glob("*/*.eml"))
