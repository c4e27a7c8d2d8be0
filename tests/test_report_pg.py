"""`newsletter report` on the PostgreSQL store: the same send and event stream as test_report.py
(loopback SendGrid, signed events replayed into `serve`, a one-click unsubscribe), all of it
recorded in the store, and the same figures; our own tracked clicks redirect and count with
the issue's links kept in the store rather than on the sending machine's disk.

Against the real PostgreSQL server of the session (conftest.pg_workspace).
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import psycopg
from loopback import SendgridServer
from pg_server import push_files
from test_report import (
    KEY,
    PEOPLE,
    STORY,
    assert_figures,
    assert_tracked_figures,
    open_and_click,
    outbox_html,
    runner,
    stream,
    write_workspace,
)
from test_serve import ONE_CLICK, LiveServer
from test_webhook import key_pair, signed

from newsletter.cli import app
from newsletter.config import Config, load_config


def pg_config(root: Path, url: str, extra: str = "") -> Config:
    path = root / "newsletter.toml"
    if extra:
        path.write_text(path.read_text() + "\n" + extra + "\n")
    return load_config(path, env={"NEWSLETTER_STORE_URL": url})


def first_sent(url: str) -> int:
    """The whole second at or after the first hand-over (as test_report.first_sent)."""
    with psycopg.connect(url) as conn:
        (moment,) = conn.execute("SELECT min(sent_at) FROM send_recipients").fetchone()
    return int(moment.timestamp()) + 1


def test_report_on_postgresql_counts_every_figure_exactly(pg_workspace, pg_url):
    root = pg_workspace
    write_workspace(root)
    push_files(root)
    private, public = key_pair()
    config = pg_config(root, pg_url, f'[serve]\nwebhook_public_key = "{public}"')
    env = {"NEWSLETTER_SEND_PROVIDER": "sendgrid", "SENDGRID_API_KEY": KEY}
    with SendgridServer(api_key=KEY) as server:
        env["NEWSLETTER_SENDGRID_HOST"] = server.url
        sent = runner.invoke(app, ["send", "issues/links.md", "--yes"], env=env)
        assert sent.exit_code == 0, sent.output
        deliveries = {d.to_email: d for d in server.deliveries()}
    assert sorted(deliveries) == sorted(PEOPLE)
    assert not (root / ".newsletter" / "ledger.sqlite3").exists()
    body = json.dumps(stream(first_sent(pg_url))).encode()
    unsubscribe = re.search(
        r"<(https://[^>]+)>", deliveries["r10@example.org"].headers["List-Unsubscribe"]
    ).group(1)
    with LiveServer(config) as live, live.client() as client:
        for _ in range(2):  # SendGrid retries a delivery: nothing counts twice
            answer = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
            assert answer.status_code == 200, answer.text
        assert client.post(live.local(unsubscribe), data=ONE_CLICK).status_code == 200
    assert not (root / ".newsletter" / "events.sqlite3").exists()
    result = runner.invoke(app, ["report", "links", "--json"])
    assert result.exit_code == 0, result.output
    assert_figures(json.loads(result.output))
    listing = runner.invoke(app, ["report"], env={"COLUMNS": "100"})
    assert listing.exit_code == 0, listing.output
    assert "links" in listing.output and "main" in listing.output


def test_tracked_clicks_on_postgresql_redirect_and_count_from_links_kept_in_the_store(
    pg_workspace, pg_url
):
    root = pg_workspace
    write_workspace(root)
    push_files(root)
    config = pg_config(root, pg_url, "[tracking]\nclicks = true\nopens = true")
    sent = runner.invoke(app, ["send", "issues/links.md", "--yes"])
    assert sent.exit_code == 0, sent.output
    # The links are the store's: serve and report may run on another machine than the send.
    assert not (root / ".newsletter" / "links").exists()
    messages = outbox_html(root)
    # The messages went out a minute ago: a click now is no scanner's at delivery.
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE send_recipients SET sent_at = now() - interval '1 minute'")
    with LiveServer(config) as live:
        open_and_click(live, messages)
    data = json.loads(runner.invoke(app, ["report", "links", "--json"]).output)
    assert data["total"]["handed_over"] == len(PEOPLE)
    assert_tracked_figures(data)


def test_store_push_copies_the_links_of_issues_sent_on_the_files_store(
    pg_workspace, pg_url, monkeypatch
):
    root = pg_workspace
    write_workspace(root)
    (root / "newsletter.toml").write_text(
        (root / "newsletter.toml").read_text() + "\n[tracking]\nclicks = true\n"
    )
    monkeypatch.delenv("NEWSLETTER_STORE_URL")  # sent before the workspace moved
    sent = runner.invoke(app, ["send", "issues/links.md", "--yes"])
    assert sent.exit_code == 0, sent.output
    assert (root / ".newsletter" / "links" / "links.json").is_file()
    monkeypatch.setenv("NEWSLETTER_STORE_URL", pg_url)
    pushed = runner.invoke(app, ["store", "push"])
    assert pushed.exit_code == 0, pushed.output
    assert pushed.output.splitlines()[-1] == "links: 1 issues (1 copied)"
    again = runner.invoke(app, ["store", "push"])
    assert again.output.splitlines()[-1] == "links: 1 issues (0 copied): nothing changed"
    (root / ".newsletter" / "links" / "links.json").unlink()  # serve runs elsewhere now
    [message] = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in (root / "outbox").glob("*/*.eml")
        if "r1@example.org" in p.read_text()
    ]
    html = message.get_body(("html",)).get_content()
    story = re.search(r'href="(https://[^"]+/c/[^"]+)"', html).group(1)
    with LiveServer(pg_config(root, pg_url)) as live, live.client() as client:
        answer = client.get(live.local(story))
    assert (answer.status_code, answer.headers["location"]) == (302, STORY)


def test_two_senders_keeping_an_issues_links_at_once_both_succeed(pg_workspace, pg_url):
    # Several senders start one shared send together, and each keeps the issue's links: the
    # second must wait for the first, not fail on the links the first has not committed yet.
    import threading

    from newsletter.tracking import pglinks
    from newsletter.tracking.links import Link

    links = [Link("https://example.org/a", "A"), Link("https://example.org/b", "B")]
    failures: list[BaseException] = []
    with psycopg.connect(pg_url) as first, psycopg.connect(pg_url) as second:
        with first.transaction():  # the first sender's keeping, not committed yet
            pglinks.write(first, "links", links)

            def keep_second() -> None:
                try:
                    pglinks.write(second, "links", links)
                except BaseException as exc:  # noqa: BLE001 - the test reports it
                    failures.append(exc)

            other = threading.Thread(target=keep_second)
            other.start()
            other.join(0.5)  # it waits for the first sender
            assert other.is_alive()
        other.join(10)
        assert not failures, failures
        assert pglinks.read(first, "links") == links
