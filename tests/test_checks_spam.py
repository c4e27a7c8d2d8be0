"""The spam score: SpamAssassin run offline on the .eml that preview writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES
from typer.testing import CliRunner

from newsletter.checks import spam
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.preview import preview

requires_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="apt-get install spamassassin"
)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_the_report_is_read_from_the_end_of_spamassassins_output():
    output = (FIXTURES / "spam" / "report.txt").read_text(encoding="utf-8")
    report = spam.parse_report(output)
    assert report is not None
    assert (report.score, report.required) == (7.4, 5.0)
    assert [r.name for r in report.rules] == [
        "NO_RELAYS", "DEAR_FRIEND", "GUARANTEED_100_PERCENT", "NO_PRESCRIPTION",
        "ACT_NOW_CAPS", "HTML_FONT_LOW_CONTRAST",
    ]  # fmt: skip
    assert report.rules[-1].description == (
        "BODY: HTML font color similar or identical to background"
    )
    assert [r.name for r in report.scoring] == [
        "DEAR_FRIEND", "GUARANTEED_100_PERCENT", "NO_PRESCRIPTION", "ACT_NOW_CAPS",
    ]  # fmt: skip


def test_output_without_a_report_is_none():
    assert spam.parse_report("Subject: hi\n\nno report here\n") is None


@pytest.mark.parametrize(
    ("score", "severity"),
    [(0.0, None), (2.0, None), (2.1, "warning"), (5.0, "warning"), (5.1, "error")],
)
def test_above_two_points_warns_and_above_five_is_an_error(score, severity):
    report = spam.SpamReport(score, 5.0, [spam.Rule("DEAR_FRIEND", score, "Dear Friend?")])
    problems = spam.spam_problems(report)
    assert [p.severity for p in problems] == ([severity] if severity else [])
    if problems:
        assert problems[0].code == "spam-score"
        assert problems[0].message.endswith(f"rules: DEAR_FRIEND (+{score:.1f})")


@requires_spamassassin
def test_the_sample_issue_scores_under_one_point_with_no_rule_against_it(workspace, monkeypatch):
    monkeypatch.delenv(spam.ENV, raising=False)
    result = preview(load_config(workspace / "newsletter.toml"), Path("issues/sample.md"))
    report = spam.score(result.eml_path.read_bytes())
    assert report.score < 1.0
    assert report.scoring == [], report.rules
    # The default template's preheader is hidden without white-on-white text.
    assert "HTML_FONT_LOW_CONTRAST" not in {r.name for r in report.rules}


@requires_spamassassin
def test_spammy_issues_warn_or_fail_preview_naming_the_rules(workspace, monkeypatch):
    monkeypatch.delenv(spam.ENV, raising=False)
    for name in ("warning.md", "error.md"):
        shutil.copy(FIXTURES / "spam" / name, workspace / "issues" / name)
    warned = run("preview", "issues/warning.md")
    assert warned.exit_code == 0, warned.output
    assert "warning spam-score: SpamAssassin scores 2.7 points (above 2.0); rules: DEAR_FRIEND" in (
        warned.output
    )
    spam_line = next(x for x in warned.output.splitlines() if x.startswith("Spam:"))
    assert spam_line.startswith(
        "Spam:      2.7 points (SpamAssassin, local tests; warns above 2.0):"
    )
    assert "DEAR_FRIEND +2.7" in spam_line
    failed = run("preview", "issues/error.md")
    assert failed.exit_code == 1, failed.output
    assert "email.eml: error spam-score: SpamAssassin scores" in failed.output


def test_without_spamassassin_preview_says_so_in_one_line_and_passes(
    workspace, monkeypatch, tmp_path
):
    monkeypatch.delenv(spam.ENV, raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 0, result.output
    assert (
        "Spam:      not scored: spamassassin is not installed (apt-get install spamassassin)\n"
        in result.output
    )
    assert "Checks:    all passed" in result.output


def test_the_check_can_be_turned_off(workspace, monkeypatch):
    monkeypatch.setenv(spam.ENV, "off")
    result = run("preview", "issues/sample.md")
    assert "Spam:      not scored: turned off (NEWSLETTER_SPAMASSASSIN=off)\n" in result.output


@requires_spamassassin
@pytest.mark.parametrize("template", ["default", "letter", "digest"])
def test_the_sample_scores_at_most_half_a_point_and_stays_unclipped_in_every_builtin_template(
    workspace, monkeypatch, template
):
    import dataclasses

    from newsletter.issue import load_issue
    from newsletter.sample import check_issue

    monkeypatch.delenv(spam.ENV, raising=False)
    issue = dataclasses.replace(load_issue(Path("issues/sample.md")), template=template)
    checked = check_issue(load_config(workspace / "newsletter.toml"), issue)
    report = spam.score(checked.sample.eml)
    assert report.score <= 0.5, report.rules
    assert len(checked.sample.html.encode()) < 102 * 1024


def test_spamassassin_starts_before_the_render_and_is_stopped_when_the_preview_fails(
    workspace, monkeypatch, tmp_path
):
    # A stand-in spamassassin that notes its pid and then waits for a message on stdin.
    pid_file = tmp_path / "pid"
    stub = tmp_path / "spamassassin"
    stub.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec cat > /dev/null\n", encoding="utf-8")
    stub.chmod(0o755)
    monkeypatch.setenv(spam.ENV, str(stub))
    # The issue fails in the render, after the imports: the stand-in has long been running.
    result = run("preview", "issues/bad/undefined-variable.md")
    assert result.exit_code == 4, result.output
    pid = int(pid_file.read_text())  # it was started before the render
    assert not Path(f"/proc/{pid}").exists()  # and stopped (and reaped) with the preview


def test_preview_as_a_command_starts_one_spamassassin_early_and_scores_with_it(workspace, tmp_path):
    import os
    import subprocess
    import sys

    # A stand-in that notes each start, reads the message and answers with an empty report.
    log = tmp_path / "starts"
    stub = tmp_path / "spamassassin"
    stub.write_text(
        f"#!/bin/sh\necho started >> {log}\ncat > /dev/null\n"
        "printf 'Content analysis details:   (0.3 points, 5.0 required)\\n\\n'\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    env = {**os.environ, spam.ENV: str(stub)}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/sample.md"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Spam:      0.3 points" in done.stdout
    assert log.read_text().splitlines() == ["started"]
