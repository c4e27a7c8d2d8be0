"""Plain-text roundup (title line; quoted headline + bullet summary per story) -> issue file."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from newsletter.errors import IssueError
from newsletter.issue import slugify

_QUOTES = "“\"'‘«„"
_BULLET = re.compile(r"^\s*[•·\-*–]\s+")
_SPACES = re.compile(r"[ \t\u00a0\u2007\u202f]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>{}|])")
_LINE_START = re.compile(r"^(#|>|\+|-|=|\d+[.)])")

_MONTHS = {
    name: number
    for number, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
         ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
         ("september", "sept", "sep"), ("october", "oct"), ("november", "nov"),
         ("december", "dec")],
        1,
    )
    for name in names
}  # fmt: skip
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\b"
_YEAR = r"(?:,?\s+(?P<year>\d{4})\b)?"
_DATES = [
    re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})\b"),
    re.compile(rf"\b{_MONTH}\s+{_DAY}{_YEAR}", re.I),  # January 21st, 2022
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}{_YEAR}", re.I),  # 21 January 2022
]


@dataclass(frozen=True)
class NewIssue:
    """An issue file to write: its name, its text, and where its date came from."""

    name: str
    text: str
    date: dt.date
    date_from_title: bool


def clean(text: str) -> str:
    """Non-breaking and repeated spaces become one space; trailing spaces go."""
    return _SPACES.sub(" ", text).strip()


def _headline(line: str) -> str:
    # “Headline ” -> “Headline”: spaces inside the closing quote are trailing spaces too.
    return re.sub(r"\s+([”\"'’»“])$", r"\1", line)


def escape_markdown(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _LINE_START.sub(r"\\\1", text)


def date_in_title(title: str, today: dt.date | None = None) -> dt.date | None:
    """The day a title names ("Week of January 21st"), or None.

    Without a year it is the nearest such day to today, back or ahead: a roundup is
    converted soon after its week, an issue is started a few days before it.
    """
    today = today or dt.date.today()
    for pattern in _DATES:
        for found in pattern.finditer(title):
            month = found["month"]
            month = int(month) if month.isdigit() else _MONTHS[month.lower().rstrip(".")]
            day, year = int(found["day"]), found["year"]
            years = [int(year)] if year else range(today.year - 4, today.year + 5)
            days = []
            for candidate in years:
                try:
                    days.append(dt.date(candidate, month, day))
                except ValueError:  # February 30th, or a 29th outside a leap year
                    continue
            if days:
                return min(days, key=lambda d: (abs(d - today), d > today))
    return None


def _dated(name_part: str, date: dt.date | None) -> tuple[dt.date, bool]:
    """The given date, else the title's, else today; and whether it came from the title."""
    if date is not None:
        return date, False
    named = date_in_title(name_part)
    return (named, True) if named else (dt.date.today(), False)


def file_to_issue(path: Path, date: dt.date | None = None) -> NewIssue:
    """Read a plain-text roundup file and convert it (see text_to_issue)."""
    try:
        source = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise IssueError(f"cannot read: {exc}", where=str(path)) from None
    return text_to_issue(source, date, where=str(path))


def text_to_issue(source: str, date: dt.date | None = None, where: str = "text") -> NewIssue:
    """Convert a plain-text roundup into an issue file, dated `date` or by its title."""
    lines = [clean(line) for line in source.replace("\r\n", "\n").split("\n")]
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line]
    if not numbered:
        raise IssueError("the text is empty", where=where)
    title = re.sub(r"\s-\s", " – ", numbered[0][1])
    intro: list[str] = []
    stories: list[dict[str, list[str] | str]] = []
    for number, line in numbered[1:]:
        if line[0] in _QUOTES:
            stories.append({"headline": _headline(line), "summary": []})
        elif stories:
            stories[-1]["summary"].append(_BULLET.sub("", line))
        elif _BULLET.match(line):
            raise IssueError(
                "a bullet summary comes before any quoted headline line", where=f"{where}:{number}"
            )
        else:
            intro.append(line)
    if not stories:
        raise IssueError(
            "no stories found: each story needs a quoted headline line (“…”) and a bullet summary",
            where=where,
        )
    first = stories[0]["headline"].strip(_QUOTES + "”’»")
    more = len(stories) - 1
    date, from_title = _dated(title, date)
    meta = {
        "title": title,
        "date": date,
        "preheader": f"{first}, and {more} more {'story' if more == 1 else 'stories'}"
        if more
        else first,
    }
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    parts = [f"---\n{front}---\n"]
    if intro:
        parts.append("\n\n".join(escape_markdown(p) for p in intro) + "\n")
    for story in stories:
        parts.append(f"## {escape_markdown(story['headline'])}\n")
        if story["summary"]:
            parts.append("\n\n".join(escape_markdown(p) for p in story["summary"]) + "\n")
    name = f"{date.isoformat()}-{slugify(title)}.md"
    return NewIssue(name, "\n".join(parts), date, from_title)


def new_issue_text(title: str, date: dt.date | None = None) -> NewIssue:
    """A skeleton issue file to start writing in, dated `date` or by its title."""
    date, from_title = _dated(title, date)
    front = yaml.safe_dump(
        {"title": title, "date": date, "preheader": "One line that shows after the subject"},
        allow_unicode=True,
        sort_keys=False,
        width=1000,
    )
    body = (
        'Hi {{ subscriber.first_name | default("there") }}, here is this week\'s news.\n\n'
        "## [First headline](https://example.org/first-story)\n\n"
        "A two- or three-sentence summary of the story.\n\n"
        "## Second headline\n\n"
        "Write the summary here. Every `## ` heading starts a new story.\n"
    )
    name = f"{date.isoformat()}-{slugify(title)}.md"
    return NewIssue(name, f"---\n{front}---\n\n{body}", date, from_title)


def write_new(folder: Path, issue: NewIssue, force: bool = False) -> Path:
    """Write a new issue file into `folder`; an existing file only with `force`."""
    path = folder / issue.name
    if path.exists() and not force:
        raise IssueError("already exists; pick another title or pass --force", where=str(path))
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(issue.text, encoding="utf-8")
    return path
