"""Each named checker (checks/content.py, checks/links.py), triggered by a real fixture issue or config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from newsletter.config import Config, load_config
from newsletter.issue import load_issue
from newsletter.sample import CheckedIssue
from newsletter.sample import check_issue as check_loaded


def check_issue(config: Config, path: Path) -> CheckedIssue:
    return check_loaded(config, load_issue(path))


def codes(checked):
    """(code, severity) of the named checkers' problems; client support has test_checks_compat."""
    return {(p.code, p.severity) for p in checked.problems if p.code != "client-support"}


def test_sample_issue_passes_every_check(workspace):
    checked = check_issue(
        load_config(workspace / "newsletter.toml"), workspace / "issues/sample.md"
    )
    assert checked.problems == []


def test_link_and_image_problems_are_warnings_with_lines(workspace):
    checked = check_issue(
        load_config(workspace / "newsletter.toml"), workspace / "issues/problems/links.md"
    )
    where = {
        p.message.split(" ")[1] if p.code == "link" else p.code: p.where for p in checked.problems
    }
    assert all(p.severity == "warning" for p in checked.problems)
    assert {p.code for p in checked.problems} == {"link", "image-no-alt", "image-src"}
    messages = " | ".join(p.message for p in checked.problems)
    for expected in ("uses http: (http://example.org/insecure)", "is relative (/about)",
                     "uses javascript:", "has an empty target", "points at this machine",
                     "image https://example.org/no-alt.png has no alt text",
                     "image is relative (images/relative.png)"):  # fmt: skip
        assert expected in messages
    assert "https://example.org/ok" not in messages
    assert where["image-no-alt"].endswith("links.md:12")


def test_long_subject_missing_preheader_and_placeholders_warn(workspace):
    checked = check_issue(
        load_config(workspace / "newsletter.toml"), workspace / "issues/problems/no-preheader.md"
    )
    assert codes(checked) == {
        ("subject-long", "warning"),
        ("no-preheader", "warning"),
        ("placeholder", "warning"),
    }


def test_leftover_merge_tags_are_errors(workspace):
    checked = check_issue(
        load_config(workspace / "newsletter.toml"), workspace / "issues/problems/leftover.md"
    )
    assert ("unresolved-merge-field", "error") in codes(checked)
    assert checked.errors


def test_template_without_unsubscribe_or_address_and_unknown_mjml(workspace):
    checked = check_issue(
        load_config(workspace / "newsletter.toml"), workspace / "issues/problems/no-unsubscribe.md"
    )
    assert codes(checked) == {
        ("no-unsubscribe", "error"), ("no-unsubscribe-text", "error"),
        ("no-postal-address", "error"), ("mjml", "warning"),
    }  # fmt: skip


def test_missing_postal_address_and_base_url_in_config(workspace):
    config = dataclasses.replace(
        load_config(workspace / "newsletter.toml"), postal_address=None, base_url=None
    )
    checked = check_issue(config, workspace / "issues/sample.md")
    assert codes(checked) == {("no-postal-address", "error"), ("no-base-url", "warning")}
    # Without base_url the unsubscribe link is the mailto form, and it is still there.
    assert checked.unsubscribe_url.startswith("mailto:news@example.org?subject=unsubscribe%20main.")


def test_html_over_102_kb_is_an_error_and_over_90_kb_a_warning(workspace):
    config = load_config(workspace / "newsletter.toml")
    paragraph = "A sentence that pads the issue out. " * 30
    for stories, expected in ((26, ("html-large", "warning")), (40, ("html-clipped", "error"))):
        body = "".join(f"## Story {n}\n\n{paragraph}\n\n" for n in range(stories))
        path = workspace / "issues" / f"big{stories}.md"
        path.write_text(f"---\ntitle: Big\npreheader: P\n---\n\n{body}", encoding="utf-8")
        checked = check_issue(config, path)
        assert expected in codes(checked), (stories, len(checked.sample.html))


def test_empty_subject_is_an_error(workspace):
    path = workspace / "issues" / "nosubject.md"
    path.write_text(
        "---\ntitle: T\nsubject: \"{{ '' }}\"\npreheader: P\n---\n\nx\n", encoding="utf-8"
    )
    checked = check_issue(load_config(workspace / "newsletter.toml"), path)
    assert ("no-subject", "error") in codes(checked)
