"""The welcome email: sent once when an address confirms, through the provider, in the ledger."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import pytest
from test_serve import LiveServer, configure, statuses, subscribe, wait_for
from test_serve_optin import confirm_links, press_confirm
from typer.testing import CliRunner

from newsletter import subscribers as subs
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.sending.ledger import Ledger
from newsletter.tokens import load_secret
from newsletter.web.welcome import Welcome

WELCOME = """---
title: Welcome aboard
subject: "Welcome, {{ subscriber.first_name | default('friend') }}"
---

Thanks for joining **Test Weekly**, {{ subscriber.first_name | default("friend") }}.
"""


def with_welcome(root: Path, extra: str = "") -> Path:
    (root / "issues" / "welcome.md").write_text(WELCOME)
    path = root / "newsletter.toml"
    path.write_text(path.read_text() + '\n[subscribe]\nwelcome = "issues/welcome.md"\n' + extra)
    return root


def welcomes(root: Path) -> list[email.message.EmailMessage]:
    folder = root / "outbox" / "welcome"
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def test_confirming_sends_the_welcome_once_not_again_after_a_restart_or_a_repeat(workspace):
    with_welcome(workspace)
    with LiveServer(configure(workspace)) as live, live.client() as client:
        subscribe(client, email="lin@example.com", name="Lin Yu")
        [link] = confirm_links(workspace, 1)
        done = press_confirm(client, link)
        assert done.status_code == 200 and "You are subscribed" in done.text
        [message] = wait_for(lambda: welcomes(workspace))
        assert message["To"].addresses[0].addr_spec == "lin@example.com"
        assert message["Subject"] == "Welcome, Lin"
        assert "Thanks for joining" in message.get_body(("plain",)).get_content()
        assert message["List-Unsubscribe"]  # a welcome is an issue: it can be left
        again = press_confirm(client, link)  # the same link pressed again
        assert again.status_code == 200
    with LiveServer(configure(workspace)) as live, live.client() as client:  # a restart
        assert press_confirm(client, link).status_code == 200
        time.sleep(0.5)  # a background welcome would have been written by now
    # Whatever asks again (a new request confirmed after an unsubscribe, another process), the
    # ledger has it: a fresh Welcome, as after a restart, does not send a second one.
    config = configure(workspace)
    [row] = [
        s
        for s in subs.iter_subscribers(workspace / "subscribers" / "main.csv")
        if s.email == "lin@example.com"
    ]
    fresh = Welcome(config, load_secret(workspace / ".newsletter", env={}))
    assert fresh.send("main", row) == "already sent"
    assert len(welcomes(workspace)) == 1
    with Ledger(workspace / ".newsletter" / "ledger.sqlite3") as book:
        assert book.counts("welcome") == {"main": {"sent": 1}}
    status = CliRunner().invoke(app, ["status", "issues/welcome.md"])
    assert "  list main: 1 sent" in status.output
    html = message.get_body(("html",)).get_content()
    assert "/archive/" not in html and "/issues/welcome" not in html  # not published: no web link
    built = CliRunner().invoke(app, ["archive", "build", "--out", "site"])
    assert built.exit_code == 0, built.output
    assert not (workspace / "site" / "welcome.html").exists()


def test_a_welcome_that_cannot_be_sent_never_fails_the_confirmation(workspace):
    with_welcome(workspace)
    with LiveServer(configure(workspace)) as live, live.client() as client:
        subscribe(client, email="lin@example.com")
        [link] = confirm_links(workspace, 1)
        (workspace / "issues" / "welcome.md").write_text("no front matter\n")  # broken since
        done = press_confirm(client, link)
        assert done.status_code == 200 and "You are subscribed" in done.text
        time.sleep(0.5)
    assert statuses(workspace)["lin@example.com"] == "subscribed"
    assert welcomes(workspace) == []


def test_a_list_without_a_welcome_of_its_own_gets_none(workspace):
    with_welcome(workspace, '[subscribe.welcome_lists]\nmain = ""\n')
    with LiveServer(configure(workspace)) as live, live.client() as client:
        subscribe(client, email="lin@example.com")
        [link] = confirm_links(workspace, 1)
        assert press_confirm(client, link).status_code == 200
        time.sleep(0.5)
    assert welcomes(workspace) == []


def test_serve_refuses_to_start_with_a_missing_welcome_issue(workspace):
    with_welcome(workspace)
    (workspace / "issues" / "welcome.md").unlink()
    from newsletter.web.app import create_app

    with pytest.raises(ConfigError) as caught:
        create_app(load_config(workspace / "newsletter.toml", env={}))
    assert str(caught.value).startswith("[subscribe] welcome: ")
    assert str(caught.value).endswith("welcome.md does not exist")


def test_preview_works_for_the_welcome_issue(workspace):
    with_welcome(workspace)
    result = CliRunner().invoke(app, ["preview", "issues/welcome.md"])
    assert result.exit_code == 0, result.output
    assert "Thanks for joining" in (workspace / "build" / "welcome" / "email.html").read_text()
