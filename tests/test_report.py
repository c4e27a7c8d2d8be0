"""`newsletter report` on a real send: the loopback SendGrid server, a replay of a realistic
stream of signed SendGrid events into a running `serve`, a one-click unsubscribe, then the
report's figures asserted exactly (text and --json)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import sqlite3
from pathlib import Path

import pytest
from loopback import SendgridServer
from test_serve import ONE_CLICK, LiveServer, configure
from test_webhook import key_pair, signed
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_config

KEY = "SG.loopback-test-key.report"
STORY = "https://example.com/story?a=1&b=2"
DATA = "https://data.example.com/set.csv"
ISSUE = f"""---
title: Links week
date: 2024-05-01
---

Read [the long story]({STORY}) and [the data]({DATA}).
"""
PEOPLE = [f"r{i}@example.org" for i in range(1, 11)]
runner = CliRunner()


def write_workspace(root: Path) -> None:
    (root / "issues" / "links.md").write_text(ISSUE, encoding="utf-8")
    rows = ["email,name,status,subscribed_at,updated_at,source"]
    rows += [
        f"{e},,subscribed,2024-01-01T00:00:00+00:00,2024-01-01T00:00:00+00:00,import"
        for e in PEOPLE
    ]
    (root / "subscribers" / "main.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def first_sent(root: Path) -> int:
    """The whole second at or after the first hand-over: the events' clock starts there."""
    with sqlite3.connect(root / ".newsletter" / "ledger.sqlite3") as db:
        (stamp,) = db.execute("SELECT min(sent_at) FROM recipients").fetchone()
    moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(moment.timestamp()) + 1


def stream(t: int) -> list[dict]:
    """What SendGrid would post over three hours: deliveries, Apple's proxy and flagged
    machine opens, a security scanner clicking every link at delivery, a reader clicking two
    links in the same second (a scanner again), real reads and clicks later, a hard and a
    soft bounce, a drop, a spam report and an unsubscribe."""
    n = iter(range(1, 1000))

    def ev(who: int, event: str, at: int, **extra) -> dict:
        return {
            "email": f"r{who}@example.org",
            "event": event,
            "timestamp": t + at,
            "sg_event_id": f"ev{next(n)}",
            "issue": "links",
            "list": "main",
            **extra,
        }

    phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    out = [ev(who, "delivered", 5) for who in (1, 2, 3, 4, 8, 9, 10)]
    out += [
        ev(7, "dropped", 1, reason="Bounced Address"),
        ev(6, "deferred", 3, response="421 4.7.0 try again later"),
        ev(5, "bounce", 4, type="bounce", reason="550 5.1.1 user unknown"),
        ev(6, "bounce", 4, type="blocked", reason="421 4.7.0 try again later"),
        ev(1, "open", 6, sg_machine_open=True, useragent="Mozilla/5.0"),
        ev(3, "open", 30, sg_machine_open=False, useragent="Mozilla/5.0"),  # Apple's proxy
        ev(2, "click", 7, url=STORY, useragent="scanner"),  # at delivery: a scanner
        ev(2, "click", 7, url=DATA, useragent="scanner"),
        ev(4, "open", 600, sg_machine_open=False, useragent=phone),
        ev(4, "click", 700, url=STORY, useragent=phone),  # two links in one second
        ev(4, "click", 700, url=DATA, useragent=phone),
        ev(4, "click", 900, url=STORY, useragent=phone),
        ev(8, "spamreport", 1800),
        ev(9, "unsubscribe", 2000),
        ev(1, "open", 3700, sg_machine_open=False, useragent=phone),
        ev(1, "click", 3800, url=STORY, useragent=phone),
        ev(2, "open", 7210, sg_machine_open=False, useragent=phone),
        ev(2, "click", 7260, url=DATA, useragent=phone),
    ]
    return out


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One send to the loopback SendGrid server, its events replayed into serve."""
    import os
    import shutil

    from conftest import FIXTURES

    root = tmp_path_factory.mktemp("report") / "ws"
    shutil.copytree(FIXTURES / "workspace", root)
    old = Path.cwd()
    os.chdir(root)
    try:
        write_workspace(root)
        private, public = key_pair()
        config = configure(root, f'webhook_public_key = "{public}"')
        env = {
            "NEWSLETTER_SEND_PROVIDER": "sendgrid",
            "NEWSLETTER_SENDGRID_HOST": "",
            "SENDGRID_API_KEY": KEY,
        }
        with SendgridServer(api_key=KEY) as server:
            env["NEWSLETTER_SENDGRID_HOST"] = server.url
            sent = runner.invoke(app, ["send", "issues/links.md", "--yes"], env=env)
            assert sent.exit_code == 0, sent.output
            deliveries = {d.to_email: d for d in server.deliveries()}
        assert sorted(deliveries) == sorted(PEOPLE)
        events = stream(first_sent(root))
        body = json.dumps(events).encode()
        unsubscribe = re.search(
            r"<(https://[^>]+)>", deliveries["r10@example.org"].headers["List-Unsubscribe"]
        ).group(1)
        with LiveServer(config) as live, live.client() as client:
            for _ in range(2):  # SendGrid retries a delivery: nothing counts twice
                answer = client.post(
                    "/webhooks/sendgrid", content=body, headers=signed(private, body)
                )
                assert answer.status_code == 200, answer.text
            assert client.post(live.local(unsubscribe), data=ONE_CLICK).status_code == 200
        text = runner.invoke(app, ["report", "issues/links.md"], env={"COLUMNS": "100"})
        figures = runner.invoke(app, ["report", "links", "--json"])
        listing = runner.invoke(app, ["report"], env={"COLUMNS": "100"})
        html = root / "report.html"
        page = runner.invoke(app, ["report", "links", "--html", str(html)])
        yield root, text, figures, listing, page, html
    finally:
        os.chdir(old)


def lines(output: str) -> list[str]:
    return [" ".join(line.split()) for line in output.splitlines() if line.strip()]


def test_report_json_counts_every_figure_exactly(reported):
    _, _, result, *_ = reported
    assert result.exit_code == 0, result.output
    assert_figures(json.loads(result.output))


def assert_figures(data: dict) -> None:
    """The figures of the `reported` send and its stream (test_report_pg asserts the same)."""
    funnel = {k: v for k, v in data["total"].items() if k not in ("list", "ledger")}
    assert funnel == {
        "handed_over": 10,
        "delivered": 7,
        "deferred": 1,
        "bounced_hard": 1,
        "bounced_soft": 1,
        "dropped": 1,
        "spam_reports": 1,
        "unsubscribed_web": 1,
        "unsubscribed_provider": 1,
    }
    assert data["total"]["ledger"] == {
        "sent": 10, "failed": 0, "retry": 0, "unknown": 0, "in_flight": 0, "invalid": 0
    }  # fmt: skip
    assert [f["list"] for f in data["lists"]] == ["main"]
    assert data["hard_bounce_reasons"] == [{"reason": "550 5.1.1 user unknown", "count": 1}]
    assert data["soft_bounce_reasons"] == [{"reason": "421 4.7.0 try again later", "count": 1}]
    assert data["drop_reasons"] == [{"reason": "Bounced Address", "count": 1}]
    assert data["opens"] == {
        "human_openers": 3,  # r1, r2, r4
        "human_opens": 3,
        "machine_opens": 2,  # r1's flagged open, r3's Apple proxy open
        "machine_only_openers": 1,  # r3
    }
    assert data["clicks"] == {
        "clickers": 3,
        "clicks": 3,
        "automated_clicks": 4,  # r2's two at delivery, r4's two in one second
        "links": [
            {"url": STORY, "text": "the long story", "clicks": 2, "clickers": 2, "automated": 2},
            {"url": DATA, "text": "the data", "clicks": 1, "clickers": 1, "automated": 2},
        ],
    }
    assert data["hours"] == [
        {"hour": 0, "human_opens": 1, "machine_opens": 2, "clicks": 1, "automated_clicks": 4},
        {"hour": 1, "human_opens": 1, "machine_opens": 0, "clicks": 1, "automated_clicks": 0},
        {"hour": 2, "human_opens": 1, "machine_opens": 0, "clicks": 1, "automated_clicks": 0},
    ]
    assert "within 10 seconds" in data["rules"]["automated_clicks"]
    assert "sg_machine_open" in data["rules"]["machine_opens"]


def test_report_text_shows_the_same_figures_and_states_the_rules(reported):
    _, result, *_ = reported
    assert result.exit_code == 0, result.output
    shown = lines(result.output)
    for expected in (
        "Handed over 10",
        "Delivered 7",
        "Deferred 1",
        "Bounced (hard) 1",
        "Bounced (soft) 1",
        "Dropped 1",
        "Spam reports 1",
        "Unsubscribed (web) 1",
        "Unsubscribed (provider) 1",
        "ledger: sent 10",
        "ledger: unknown 0",
        "550 5.1.1 user unknown 1",
        "Human openers (unique) 3 42.9 %",
        "Human opens 3",
        "Machine opens (apart) 2",
        "Machine-only openers 1",
        "Clickers (unique) 3 42.9 %",
        "Clicks 3",
        "Automated clicks (apart) 4",
        "the long story 2 2 2",
        STORY,
        "the data 1 1 2",
        "+0h 1 2 1 4",
        "+1h 1 0 1 0",
        "+2h 1 0 1 0",
    ):
        assert expected in shown, (expected, shown)
    flat = " ".join(shown)
    assert "Automated clicks: A click is automated when it comes within 10 seconds" in flat
    assert "Machine opens: An open is a machine open when the provider flags it" in flat


def test_report_without_an_issue_lists_recent_sends(reported):
    listing = reported[3]
    assert listing.exit_code == 0, listing.output
    [row] = [line for line in lines(listing.output) if line.startswith("links")]
    # issue (lists), date, handed over, delivered, bounced, human openers, clickers, unsubscribed
    assert row.split()[3:] == ["10", "7", "2", "3", "3", "2"]


def test_report_of_an_issue_never_sent_says_so(workspace):
    result = runner.invoke(app, ["report", "issues/sample.md"])
    assert result.exit_code == 0
    assert result.output == "No sends of sample are recorded.\n"


def test_report_counts_our_own_tracked_clicks_and_opens_after_an_outbox_send(workspace):
    write_workspace(workspace)
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text() + "\n[tracking]\nclicks = true\nopens = true\n")
    sent = runner.invoke(app, ["send", "issues/links.md", "--yes"])
    assert sent.exit_code == 0, sent.output
    messages = outbox_html(workspace)
    # The messages went out a minute ago: a click now is no scanner's at delivery.
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with sqlite3.connect(workspace / ".newsletter" / "ledger.sqlite3") as db:
        db.execute(
            "UPDATE recipients SET sent_at = ?", (earlier.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),)
        )
    with LiveServer(load_config(config, env={})) as live:
        open_and_click(live, messages)
    data = json.loads(runner.invoke(app, ["report", "links", "--json"]).output)
    assert_tracked_figures(data)


def outbox_html(root: Path) -> dict[str, str]:
    """Address -> the HTML part of the message the outbox holds for it."""
    messages = {}
    for path in (root / "outbox").glob("*/*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        messages[message["To"].addresses[0].addr_spec] = message.get_body(("html",)).get_content()
    return messages


def open_and_click(live: LiveServer, messages: dict[str, str]) -> None:
    """r1 opens in a browser and clicks the story; r2's image is fetched as Apple's proxy
    fetches it."""
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
    with live.client() as client:
        for who, agent in (("r1", browser), ("r2", {"User-Agent": "Mozilla/5.0"})):
            html = messages[f"{who}@example.org"]
            pixel = re.search(r'<img src="(https://[^"]+/o/[^"]+)"', html).group(1)
            assert client.get(live.local(pixel), headers=agent).status_code == 200
        story = re.search(r'href="(https://[^"]+/c/[^"]+)"', messages["r1@example.org"]).group(1)
        answer = client.get(live.local(story), headers=browser)
        assert (answer.status_code, answer.headers["location"]) == (302, STORY)


def assert_tracked_figures(data: dict) -> None:
    """The report of open_and_click: one human and one machine opener, one real click."""
    assert data["opens"] == {
        "human_openers": 1,
        "human_opens": 1,
        "machine_opens": 1,  # r2's image fetched as Apple's proxy fetches it
        "machine_only_openers": 1,
    }
    assert (data["clicks"]["clickers"], data["clicks"]["automated_clicks"]) == (1, 0)
    assert data["clicks"]["links"] == [
        {"url": STORY, "text": "the long story", "clicks": 1, "clickers": 1, "automated": 0}
    ]
