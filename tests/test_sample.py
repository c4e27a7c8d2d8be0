"""The sample reader's message, built once per issue from one read of the issue file."""

from __future__ import annotations

import email
import email.policy
import os
import sys
from pathlib import Path

import pytest

from newsletter import sending
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.preview import preview
from newsletter.render import Renderer
from newsletter.sample import find_recipient, sample_message
from newsletter.tokens import load_secret

_opened: list[Path] | None = None


def _count_opens(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _opened.append(Path(os.fsdecode(args[0])).resolve())


sys.addaudithook(_count_opens)  # audit hooks cannot be removed: this one counts only when asked


@pytest.fixture
def opened():
    global _opened
    _opened = []
    yield _opened
    _opened = None


@pytest.mark.parametrize("command", ["send", "preview"])
def test_the_issue_file_is_read_once(workspace, opened, command):
    config = load_config(workspace / "newsletter.toml")
    issue = workspace / "issues" / "merge.md"
    if command == "send":
        sending.prepare(config, issue, provider="outbox")
    else:
        preview(config, issue)
    assert opened.count(issue.resolve()) == 1


def test_the_sample_is_the_message_a_subscriber_gets(workspace):
    config = load_config(workspace / "newsletter.toml")
    issue = load_issue(workspace / "issues" / "merge.md")
    fields, name = find_recipient(config, "main", "ADA@example.org")
    sample = sample_message(
        config, Renderer(config).render(issue), "main", load_secret(config.state_dir), fields, name
    )
    message = email.message_from_bytes(sample.eml, policy=email.policy.default)
    assert sample.to == message["To"].addresses[0].addr_spec == fields["email"]
    assert sample.subject == message["Subject"] == "News for Ada"
    assert message.get_body("html").get_content().replace("\r\n", "\n") == sample.html
    assert message.get_body("plain").get_content().replace("\r\n", "\n") == sample.text
    assert f"<{sample.unsubscribe_url}>" in message["List-Unsubscribe"]
    assert sample.unsubscribe_url in sample.text
