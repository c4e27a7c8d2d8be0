"""Checks that read the issue source too, and the placeholders `newsletter init` writes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.sample import check_issue
from newsletter.sending.prepared import ChecksFailed, prepare

runner = CliRunner()


def test_mailchimp_tag_that_markdown_turns_into_emphasis_is_an_error(workspace):
    config = load_config(workspace / "newsletter.toml")
    checked = check_issue(config, load_issue(workspace / "issues/problems/mailchimp-tag.md"))
    assert "<em>|FNAME|</em>" in checked.sample.html  # what Markdown made of it
    leftovers = [p for p in checked.errors if p.code == "unresolved-merge-field"]
    assert leftovers, checked.problems
    assert str(leftovers[0]).startswith(str(workspace / "issues/problems/mailchimp-tag.md:6"))
    assert "*|FNAME|*" in str(leftovers[0])


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A workspace straight from `newsletter init`, with its skeleton issue."""
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "fresh"]).exit_code == 0
    root = tmp_path / "fresh"
    monkeypatch.chdir(root)
    return root, next((root / "issues").glob("*.md"))


def test_init_placeholders_are_warnings_in_a_preview(fresh):
    root, issue = fresh
    checked = check_issue(load_config(root / "newsletter.toml"), load_issue(issue))
    found = {(p.code, p.severity, p.where.split(":")[0]) for p in checked.problems}
    assert ("init-placeholder", "warning", str(root / "newsletter.toml")) in found
    assert ("init-placeholder", "warning", str(issue)) in found
    messages = " ".join(p.message for p in checked.problems)
    assert "Your street address, city and country" in messages
    assert "A two- or three-sentence summary" in messages
    result = runner.invoke(app, ["preview", str(issue.relative_to(root))])
    assert result.exit_code == 0, result.output
    assert "Checks:    all passed" not in result.output
    assert "init-placeholder" in result.output


def test_init_placeholders_stop_a_send(fresh):
    root, issue = fresh
    with pytest.raises(ChecksFailed) as failed:
        prepare(load_config(root / "newsletter.toml"), issue)
    assert "init-placeholder" in str(failed.value)


def test_init_placeholders_do_not_stop_a_test_send_to_the_editors(fresh):
    root, issue = fresh
    prepared = prepare(load_config(root / "newsletter.toml"), issue, test_to=["me@example.org"])
    assert {p.code for p in prepared.checked.warnings} >= {"init-placeholder"}
