"""Issue files: front matter, stories, links and images."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import IssueError
from newsletter.issue import parse_issue, slugify


def test_stories_carry_headline_link_image_and_body():
    text = (
        "---\ntitle: T\ndate: 2024-03-01\n---\n\nIntro *here*.\n\n"
        "## [Linked](https://example.org/a)\n\n![Alt text](https://example.org/p.png)\n\nBody A.\n\n"
        "## Plain\n\nBody B.\n\n```\n## not a story\n```\n"
    )
    issue = parse_issue(text, Path("x.md"))
    assert issue.date == dt.date(2024, 3, 1)
    assert issue.subject == "T"
    assert issue.intro == "Intro *here*."
    first, second = issue.stories
    assert (first.headline, first.link, first.image, first.image_alt) == (
        "Linked", "https://example.org/a", "https://example.org/p.png", "Alt text"
    )  # fmt: skip
    assert first.body == "Body A."
    assert first.line == 8
    assert second.headline == "Plain" and second.link is None
    assert "## not a story" in second.body


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ntitle: T\n", "x.md:1: front matter is not closed by a '---' line"),
        ("---\nsubject: S\n---\n", "x.md: front matter needs a non-empty 'title'"),
        ("---\n- a\n- b\n---\n", "x.md:2: front matter must be a mapping of keys to values"),
        ("---\ntitle: T\ndate: someday\n---\n", "x.md:3: date: expected YYYY-MM-DD, got 'someday'"),
        ("---\ntitle: [1, 2]\n---\n", "x.md:2: title: expected text, got list"),
        ("---\ntitle: T\n  bad: indent\n---\n", "x.md:3: invalid front matter: mapping values are not allowed here"),
    ],
)  # fmt: skip
def test_front_matter_errors_name_file_and_line(text, message):
    with pytest.raises(IssueError) as caught:
        parse_issue(text, Path("x.md"))
    assert str(caught.value) == message


@given(st.text(min_size=1, max_size=80))
def test_slugs_are_safe_folder_names(title):
    slug = slugify(title)
    assert slug and "/" not in slug and ".." not in slug
    assert all(c.isascii() and (c.isalnum() or c == "-") for c in slug)


@given(
    year=st.integers(0, 9999),
    month=st.integers(0, 99),
    day=st.integers(0, 99),
    quoted=st.booleans(),
    key=st.sampled_from(["date", "title", "subject"]),
)
def test_any_date_shaped_value_parses_or_names_its_file_and_line(year, month, day, quoted, key):
    value = f"{year:04d}-{month:02d}-{day:02d}"
    value = f'"{value}"' if quoted else value
    lines = {"date": "title: T\n", "title": "", "subject": "title: T\n"}[key]
    text = f"---\n{lines}{key}: {value}\n---\n\nBody.\n"
    line = text.split("\n").index(f"{key}: {value}") + 1
    try:
        issue = parse_issue(text, Path("x.md"))
    except IssueError as exc:
        assert str(exc).startswith(f"x.md:{line}: {key}: ")
        assert "\n" not in str(exc)
    else:
        assert key != "date" or issue.date == dt.date(year, month, day)
