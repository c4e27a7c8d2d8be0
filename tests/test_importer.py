"""Plain-text roundups and new issues: the date a title carries decides the file's date."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.importer import date_in_title, new_issue_text

TODAY = dt.date(2026, 12, 1)


@pytest.mark.parametrize(
    ("title", "day"),
    [
        ("NATO Weekly Roundup – Week of January 21st", dt.date(2027, 1, 21)),  # 7 weeks ahead
        ("NATO Weekly Roundup – Week of January 21st, 2022", dt.date(2022, 1, 21)),
        ("Week of 4 March 2024", dt.date(2024, 3, 4)),
        ("Roundup 2023-06-30", dt.date(2023, 6, 30)),
        ("Sept. 3rd notes", dt.date(2026, 9, 3)),
        ("Week of Dec 7", dt.date(2026, 12, 7)),  # next week: nearer than last year's
        ("Week of June 2nd", dt.date(2026, 6, 2)),  # six months back beats six months ahead
        ("The February 29th special", dt.date(2028, 2, 29)),  # the nearest leap day
        ("May the fourth be with you", None),
        ("Week 12: 40 stories in March", None),
        ("February 30th", None),
        ("Notes", None),
    ],
)
def test_date_in_title_takes_the_named_day_nearest_today(title, day):
    assert date_in_title(title, today=TODAY) == day


def test_new_issue_text_without_a_date_uses_the_title_then_today():
    assert new_issue_text("Week of March 4th, 2024").name == "2024-03-04-week-of-march-4th-2024.md"
    assert new_issue_text("Notes").name == f"{dt.date.today()}-notes.md"
    given = new_issue_text("Week of March 4th, 2024", dt.date(2025, 1, 1))
    assert (given.name, given.date_from_title) == ("2025-01-01-week-of-march-4th-2024.md", False)
