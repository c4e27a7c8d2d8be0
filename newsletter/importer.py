"""Plain-text roundup (title line; quoted headline + bullet summary per story) -> issue file."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import yaml

from newsletter.errors import IssueError
from newsletter.issue import slugify

_QUOTES = "“\"'‘«„"
_BULLET = re.compile(r"^\s*[•·\-*–]\s+")
_SPACES = re.compile(r"[ \t\u00a0\u2007\u202f]+")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>{}|])")
_LINE_START = re.compile(r"^(#|>|\+|-|=|\d+[.)])")


def clean(text: str) -> str:
    """Non-breaking and repeated spaces become one space; trailing spaces go."""
    return _SPACES.sub(" ", text).strip()


def _headline(line: str) -> str:
    # “Headline ” -> “Headline”: spaces inside the closing quote are trailing spaces too.
    return re.sub(r"\s+([”\"'’»“])$", r"\1", line)


def escape_markdown(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _LINE_START.sub(r"\\\1", text)


def text_to_issue(source: str, date: dt.date, where: str = "text") -> tuple[str, str]:
    """Convert a plain-text roundup into (file name, issue file text)."""
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
    return name, "\n".join(parts)


def new_issue_text(title: str, date: dt.date) -> tuple[str, str]:
    """A skeleton issue file to start writing in."""
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
    return f"{date.isoformat()}-{slugify(title)}.md", f"---\n{front}---\n\n{body}"


def write_new(folder: Path, name: str, text: str, force: bool = False) -> Path:
    path = folder / name
    if path.exists() and not force:
        raise IssueError("already exists; pick another title or pass --force", where=str(path))
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
