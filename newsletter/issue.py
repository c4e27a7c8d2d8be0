"""Issue file (YAML front matter + Markdown) -> Issue; one `## ` heading per story."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from newsletter.errors import IssueError
from newsletter.language import dir_problem, lang_problem

FRONT_MATTER_KEYS = {
    "title", "subject", "preheader", "date", "template", "list", "lang", "dir", "archive",
    "segment", "author",
}  # fmt: skip
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
    image_caption: str | None = None  # the lead image's Markdown title: ![alt](src "caption")


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
    lang: str | None = None  # None: newsletter.toml's
    dir: str | None = None
    author: str | None = None  # the byline under the title
    archive: bool = True  # False: never in the public archive, the feed or a "view in browser" link
    segment: str | None = None  # who of the list it goes to (newsletter.segments), checked to parse
    # line of each front matter key, so errors about a value can name it
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    def where(self, key: str) -> str:
        """`file:line` of a front matter key (just the file when it is not there)."""
        line = self.key_lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

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
    nul = text.find("\0")
    if nul >= 0:  # it would reach the message as is; no mail client shows one on purpose
        line = text.count("\n", 0, nul) + 1
        raise IssueError("contains a NUL byte; remove it", where=f"{path}:{line}")
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
    key_lines = _key_lines(lines[1:end])
    body_start = end + 1

    def text(key: str, required: bool = False) -> str | None:
        where = f"{path}:{key_lines[key]}" if key in key_lines else str(path)
        return _text_field(meta, key, where, required)

    title = text("title", required=True)
    date = meta.get("date")
    date_where = f"{path}:{key_lines['date']}" if "date" in key_lines else str(path)
    if isinstance(date, dt.datetime):
        date = date.date()
    elif isinstance(date, str):
        try:
            date = dt.date.fromisoformat(date)
        except ValueError as exc:
            if _DATE_SHAPE.fullmatch(date.strip()):
                raise _not_a_date(date, exc, date_where) from None
            raise IssueError(f"date: expected YYYY-MM-DD, got {date!r}", where=date_where) from None
    elif date is not None and not isinstance(date, dt.date):
        raise IssueError(f"date: expected YYYY-MM-DD, got {date!r}", where=date_where)
    lang, direction = text("lang"), text("dir")
    archive = meta.get("archive", True)
    if not isinstance(archive, bool):
        where = f"{path}:{key_lines.get('archive', 1)}"
        raise IssueError(f"archive: expected true or false, got {archive!r}", where=where)
    for key, problem in (
        ("lang", lang and lang_problem(lang)),
        ("dir", direction and dir_problem(direction)),
    ):
        if problem:
            raise IssueError(problem, where=f"{path}:{key_lines.get(key, 1)}")
    segment = text("segment")
    if segment is not None:
        from newsletter.segments import compile_segment

        compile_segment(segment, where=f"{path}:{key_lines.get('segment', 1)}: segment")
    return Issue(
        path=path,
        slug=slugify(path.stem),
        title=title,
        subject=text("subject") or title,
        preheader=text("preheader"),
        date=date,
        template=text("template"),
        list=text("list"),
        body="\n".join(lines[body_start:]),
        body_line=body_start + 1,
        lang=lang,
        dir=direction,
        author=text("author"),
        archive=archive,
        segment=segment,
        key_lines=key_lines,
    )


_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:")
_DATE_SHAPE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")


def _key_lines(lines: list[str]) -> dict[str, int]:
    """File line of each top-level front matter key (lines[0] is the file's line 2)."""
    found: dict[str, int] = {}
    for n, text in enumerate(lines):
        key = _KEY.match(text)
        if key:
            found.setdefault(key.group(1), n + 2)
    return found


def _not_a_date(value: str, exc: ValueError, where: str, key: str = "date") -> IssueError:
    return IssueError(f"{key}: {value!r} is not a date ({exc}); use YYYY-MM-DD", where=where)


class _Loader(yaml.SafeLoader):
    """safe_load, except that an impossible date (2024-02-30) names its line and key."""

    def construct_yaml_timestamp(self, node):
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise _BadDate(node, exc) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


class _BadDate(Exception):
    def __init__(self, node: yaml.Node, exc: ValueError) -> None:
        super().__init__(str(exc))
        self.node, self.exc = node, exc


def _front_matter(lines: list[str], path: Path) -> dict:
    source = "\n".join(lines)
    try:
        meta = yaml.load(source, Loader=_Loader) if source.strip() else {}
    except _BadDate as bad:
        index = bad.node.start_mark.line
        key = _KEY.match(lines[index]) if index < len(lines) else None
        where = f"{path}:{index + 2}"
        raise _not_a_date(bad.node.value, bad.exc, where, key.group(1) if key else "date") from None
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


def _text_field(meta: dict, key: str, where: str, required: bool = False) -> str | None:
    value = meta.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise IssueError(f"front matter needs a non-empty {key!r}", where=where)
        return None
    if type(value) is dt.date:  # `title: 2024-03-01` is text that YAML read as a date
        return value.isoformat()
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise IssueError(f"{key}: expected text, got {type(value).__name__}", where=where)
    return str(value).strip()


_HEADING = re.compile(r"^##(?!#)[ \t]+(.*?)[ \t#]*$")
_FENCE_OPEN = re.compile(r"^[ \t]{0,3}(```|~~~)")
_LINKED = re.compile(r"^\[(?P<text>.+)\]\((?P<url>\S+?)\)$")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>\S+?)(?:[ \t]+\"(?P<title>[^\"]*)\")?\)$")


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
    image = image_alt = caption = None
    first, _, rest = body.partition("\n\n")
    pic = _IMAGE.match(first.strip())
    if pic:
        image, image_alt, caption = pic.group("src"), pic.group("alt"), pic.group("title")
        body = rest.strip()
    return Story(heading, link, image, image_alt, body, line, image_caption=caption or None)
