"""Issue file (YAML front matter + Markdown) -> Issue; one `## ` heading per story."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from newsletter.errors import IssueError

FRONT_MATTER_KEYS = {"title", "subject", "preheader", "date", "template", "list"}
_FENCE = re.compile(r"^---[ \t]*$")
_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Story:
    headline: str  # Markdown inline source of the heading, link removed
    link: str | None
    image: str | None
    image_alt: str | None
    body: str  # Markdown source of everything under the heading
    line: int  # 1-based line of the heading in the issue file


@dataclass(frozen=True)
class Issue:
    path: Path
    slug: str
    title: str
    subject: str
    preheader: str | None
    date: dt.date | None
    template: str | None
    list: str | None
    body: str  # the Markdown body as written (may hold Jinja merge fields)
    body_line: int  # line of the file where the body starts

    @cached_property
    def _parts(self) -> tuple[str, list[Story]]:
        return split_stories(self.body.split("\n"), first_line=self.body_line)

    @property
    def intro(self) -> str:
        """Markdown before the first story, as written (rendering splits the Jinja output)."""
        return self._parts[0]

    @property
    def stories(self) -> list[Story]:
        return self._parts[1]


def slugify(text: str) -> str:
    """Lower-case ASCII words joined by hyphens: the name of an issue's build and outbox folders."""
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SLUG_STRIP.sub("-", ascii_text.lower()).strip("-") or "issue"


def load_issue(path: Path) -> Issue:
    """Read an issue file; errors name the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IssueError("issue file not found", where=str(path)) from None
    except OSError as exc:
        raise IssueError(f"cannot read: {exc.strerror}", where=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueError("not valid UTF-8", where=f"{path}:{line}") from None
    return parse_issue(text, path)


def parse_issue(text: str, path: Path) -> Issue:
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or not _FENCE.match(lines[0]):
        raise IssueError(
            "must start with a '---' line opening the YAML front matter", where=f"{path}:1"
        )
    try:
        end = next(i for i in range(1, len(lines)) if _FENCE.match(lines[i]))
    except StopIteration:
        raise IssueError("front matter is not closed by a '---' line", where=f"{path}:1") from None
    meta = _front_matter(lines[1:end], path)
    body_start = end + 1

    title = _text_field(meta, "title", path, required=True)
    date = meta.get("date")
    if isinstance(date, dt.datetime):
        date = date.date()
    elif isinstance(date, str):
        try:
            date = dt.date.fromisoformat(date)
        except ValueError:
            raise IssueError(f"date: expected YYYY-MM-DD, got {date!r}", where=str(path)) from None
    elif date is not None and not isinstance(date, dt.date):
        raise IssueError(f"date: expected YYYY-MM-DD, got {date!r}", where=str(path))
    return Issue(
        path=path,
        slug=slugify(path.stem),
        title=title,
        subject=_text_field(meta, "subject", path) or title,
        preheader=_text_field(meta, "preheader", path),
        date=date,
        template=_text_field(meta, "template", path),
        list=_text_field(meta, "list", path),
        body="\n".join(lines[body_start:]),
        body_line=body_start + 1,
    )


def _front_matter(lines: list[str], path: Path) -> dict:
    source = "\n".join(lines)
    try:
        meta = yaml.safe_load(source) if source.strip() else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark else 1  # +1 for 1-based, +1 for the opening '---'
        problem = exc.problem or exc.context or "invalid YAML"
        raise IssueError(f"invalid front matter: {problem}", where=f"{path}:{line}") from None
    except yaml.YAMLError as exc:
        raise IssueError(f"invalid front matter: {exc}", where=str(path)) from None
    if not isinstance(meta, dict):
        raise IssueError("front matter must be a mapping of keys to values", where=f"{path}:2")
    for key in meta:
        if key not in FRONT_MATTER_KEYS:
            line = next((n + 2 for n, text in enumerate(lines) if text.startswith(f"{key}:")), 1)
            known = ", ".join(sorted(FRONT_MATTER_KEYS))
            raise IssueError(
                f"unknown front matter key {key!r} (known: {known})", where=f"{path}:{line}"
            )
    return meta


def _text_field(meta: dict, key: str, path: Path, required: bool = False) -> str | None:
    value = meta.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise IssueError(f"front matter needs a non-empty {key!r}", where=str(path))
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise IssueError(f"{key}: expected text, got {type(value).__name__}", where=str(path))
    return str(value).strip()


_HEADING = re.compile(r"^##(?!#)[ \t]+(.*?)[ \t#]*$")
_FENCE_OPEN = re.compile(r"^[ \t]{0,3}(```|~~~)")
_LINKED = re.compile(r"^\[(?P<text>.+)\]\((?P<url>\S+?)\)$")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>\S+?)(?:[ \t]+\"[^\"]*\")?\)$")


def split_stories(lines: list[str], first_line: int) -> tuple[str, list[Story]]:
    """Cut the body at each `## ` heading (outside code fences) into an intro and stories."""
    intro: list[str] = []
    stories: list[tuple[int, str, list[str]]] = []
    in_fence = None
    for offset, line in enumerate(lines):
        fence = _FENCE_OPEN.match(line)
        if fence:
            in_fence = None if in_fence == fence.group(1) else (in_fence or fence.group(1))
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            stories.append((first_line + offset, heading.group(1), []))
        elif stories:
            stories[-1][2].append(line)
        else:
            intro.append(line)
    return "\n".join(intro).strip(), [_story(*parts) for parts in stories]


def _story(line: int, heading: str, body_lines: list[str]) -> Story:
    link = None
    linked = _LINKED.match(heading)
    if linked:
        heading, link = linked.group("text"), linked.group("url")
    body = "\n".join(body_lines).strip()
    image = image_alt = None
    first, _, rest = body.partition("\n\n")
    pic = _IMAGE.match(first.strip())
    if pic:
        image, image_alt = pic.group("src"), pic.group("alt")
        body = rest.strip()
    return Story(
        headline=heading, link=link, image=image, image_alt=image_alt, body=body, line=line
    )
