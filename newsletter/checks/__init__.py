"""Rendered issue -> problems a subscriber would notice, each with a code, severity and place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.config import Config
from newsletter.issue import Issue, load_issue
from newsletter.render import BUILTIN_TEMPLATES, TOKEN, Personalized, Rendered, Renderer

ERROR, WARNING = "error", "warning"
CLIP_BYTES = 102 * 1024  # Gmail clips the HTML beyond this and hides the rest behind a link
WARN_BYTES = 90 * 1024
SUBJECT_MAX = 78
SAMPLE_RECIPIENT = {"email": "reader@example.com"}

# The known MJML elements; anything else named mj-* is dropped by the compiler.
MJML_TAGS = {
    "mjml",
    "mj-head",
    "mj-body",
    "mj-attributes",
    "mj-all",
    "mj-class",
    "mj-breakpoint",
    "mj-font",
    "mj-html-attributes",
    "mj-html-attribute",
    "mj-selector",
    "mj-preview",
    "mj-style",
    "mj-title",
    "mj-accordion",
    "mj-accordion-element",
    "mj-accordion-title",
    "mj-accordion-text",
    "mj-button",
    "mj-carousel",
    "mj-carousel-image",
    "mj-column",
    "mj-divider",
    "mj-group",
    "mj-hero",
    "mj-image",
    "mj-navbar",
    "mj-navbar-link",
    "mj-raw",
    "mj-section",
    "mj-social",
    "mj-social-element",
    "mj-spacer",
    "mj-table",
    "mj-text",
    "mj-wrapper",
    "mj-include",
}
_MJ_TAG = re.compile(r"<(mj-[a-z-]+)")
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\*\|[A-Z0-9_]+\|\*")
_PLACEHOLDER = re.compile(r"\bTK\b|\blorem ipsum\b|\bTODO\b|\bXXX\b", re.I)
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"}


@dataclass(frozen=True)
class Problem:
    code: str
    severity: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity} {self.code}: {self.message}"


@dataclass
class CheckedIssue:
    issue: Issue
    rendered: Rendered
    sample: Personalized  # what the sample recipient gets
    unsubscribe_url: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]


def check_issue(
    config: Config,
    issue_path: Path,
    renderer: Renderer | None = None,
    recipient: dict[str, str] | None = None,
    list_name: str | None = None,
    secret: bytes = b"preview",
) -> CheckedIssue:
    """Render an issue once, personalise it for a sample recipient, and check the result."""
    from newsletter.message import Campaign

    issue = load_issue(issue_path)
    rendered = (renderer or Renderer(config)).render(issue)
    recipient = recipient or SAMPLE_RECIPIENT
    campaign = Campaign(config, rendered, list_name or issue.list or config.list, secret)
    url, mailto = campaign.unsubscribe_links(recipient["email"].lower())
    sample = rendered.personalize(recipient, url or mailto)
    problems = check_rendered(config, rendered, sample, url or mailto)
    return CheckedIssue(issue, rendered, sample, url or mailto, problems)


def check_rendered(
    config: Config, rendered: Rendered, sample: Personalized, unsubscribe_url: str
) -> list[Problem]:
    locate = _Locator(config, rendered)
    problems: list[Problem] = []
    add = lambda code, severity, where, message: problems.append(  # noqa: E731
        Problem(code, severity, where, message)
    )
    issue_file = locate.issue_path

    size = len(sample.html.encode("utf-8"))
    if size > CLIP_BYTES:
        add(
            "html-clipped",
            ERROR,
            "email.html",
            f"HTML is {size / 1024:.1f} KB; Gmail clips messages over 102 KB and hides the "
            "footer with the unsubscribe link",
        )
    elif size > WARN_BYTES:
        add(
            "html-large",
            WARNING,
            "email.html",
            f"HTML is {size / 1024:.1f} KB, close to Gmail's 102 KB clipping limit",
        )

    if not sample.subject.strip():
        add("no-subject", ERROR, issue_file, "the subject is empty")
    elif len(sample.subject) > SUBJECT_MAX:
        add(
            "subject-long",
            WARNING,
            issue_file,
            f"subject is {len(sample.subject)} characters; inboxes cut it after about "
            f"{SUBJECT_MAX}",
        )
    if not rendered.preheader:
        add(
            "no-preheader",
            WARNING,
            issue_file,
            "no preheader: inboxes will show the first words of the body after the subject "
            "(set `preheader:` in the front matter)",
        )

    doc = _parse_html(sample.html)
    anchors = doc.xpath("//a") if doc is not None else []
    unsubscribe = [a for a in anchors if a.get("href") == unsubscribe_url]
    if not any(_visible(a) and _text(a) for a in unsubscribe):
        add(
            "no-unsubscribe",
            ERROR,
            f"template {locate.template}",
            "no visible unsubscribe link: link {{ unsubscribe_url }} in the footer",
        )
    if unsubscribe_url not in sample.text:
        add(
            "no-unsubscribe-text",
            ERROR,
            f"template {locate.template}",
            "the plain-text part has no unsubscribe URL",
        )
    if not config.base_url:
        add(
            "no-base-url",
            WARNING,
            locate.config_file,
            "base_url is not set: unsubscribe links fall back to mailto, and Gmail and Yahoo "
            "want one-click https unsubscribe (RFC 8058)",
        )

    address = " ".join((config.postal_address or "").split())
    if not address:
        add(
            "no-postal-address",
            ERROR,
            locate.config_file,
            "postal_address is not set; anti-spam law (CAN-SPAM, CASL) requires it in the footer",
        )
    elif doc is not None and address not in " ".join(doc.text_content().split()):
        add(
            "no-postal-address",
            ERROR,
            f"template {locate.template}",
            "the postal address does not appear in the HTML; show "
            "{{ publication.postal_address }} in the footer",
        )

    for part, text in (
        ("subject", sample.subject),
        ("email.html", sample.html),
        ("email.txt", sample.text),
    ):
        for match in _LEFTOVER.finditer(text):
            snippet = text[max(0, match.start() - 20) : match.end() + 20].replace("\n", " ")
            add(
                "unresolved-merge-field",
                ERROR,
                locate.find(match.group(0), part),
                f"unresolved merge field or template tag in {part}: …{snippet.strip()}…",
            )
            break
        if TOKEN.search(text):
            add("unresolved-merge-field", ERROR, part, "a merge field was left unfilled")

    if doc is not None:
        for img in doc.xpath("//img"):
            src = (img.get("src") or "").strip()
            decorative = img.get("role") == "presentation" or img.get("aria-hidden") == "true"
            if not (img.get("alt") or "").strip() and not decorative:
                add(
                    "image-no-alt",
                    WARNING,
                    locate.find(f"]({src}", "email.html", src),
                    f"image {src or '(no src)'} has no alt text",
                )
            problem = _url_problem(src, image=True)
            if problem:
                where = locate.find(f"]({src}", "email.html", src)
                add("image-src", WARNING, where, f"image {problem}")
        for a in anchors:
            href = (a.get("href") or "").strip()
            if href == unsubscribe_url:
                continue
            problem = _url_problem(href, image=False)
            if problem:
                label = _text(a)[:40] or href
                add(
                    "link",
                    WARNING,
                    locate.find(f"]({href}", "email.html", f'"{href}"', label),
                    f"link “{label}” {problem}",
                )

    for match in _PLACEHOLDER.finditer(sample.text):
        add(
            "placeholder",
            WARNING,
            locate.find(match.group(0), "email.txt"),
            f"placeholder text {match.group(0)!r} left in the issue",
        )

    for tag in sorted(set(_MJ_TAG.findall(rendered.mjml)) - MJML_TAGS):
        add(
            "mjml",
            WARNING,
            f"template {locate.template}",
            f"unknown MJML element <{tag}> is dropped from the email",
        )
    return problems


def _url_problem(url: str, image: bool) -> str | None:
    if not url or url == "#":
        return "has an empty target" if not image else "has no src"
    lowered = url.lower()
    if lowered.startswith("javascript:"):
        return "uses javascript:, which email clients block"
    if lowered.startswith(("mailto:", "tel:")) and not image:
        return None
    parts = urlsplit(url)
    if not parts.scheme:
        return f"is relative ({url}); use an absolute https URL"
    if parts.scheme == "http":
        return f"uses http: ({url}); use https"
    if parts.scheme != "https":
        return f"uses {parts.scheme}: ({url})"
    if (parts.hostname or "") in _LOCAL_HOSTS or (parts.hostname or "").endswith(".localhost"):
        return f"points at this machine ({url})"
    return None


def _parse_html(html: str):
    import lxml.html

    try:
        return lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return None


def _text(element) -> str:
    return " ".join(element.text_content().split())


def _in_link(element) -> bool:
    return any(parent.tag == "a" for parent in element.iterancestors())


def _visible(element) -> bool:
    for node in (element, *element.iterancestors()):
        style = (node.get("style") or "").replace(" ", "").lower()
        if "display:none" in style or "visibility:hidden" in style or "max-height:0" in style:
            return False
    return True


class _Locator:
    """Finds the file and line a snippet of the output came from, for messages."""

    def __init__(self, config: Config, rendered: Rendered) -> None:
        self.issue_path = str(rendered.issue.path)
        self.template = (rendered.issue.template or config.template) + ".mjml.j2"
        self.config_file = str(config.path or "newsletter.toml")
        self._issue = rendered.issue.path
        self._folders = (config.templates_dir, BUILTIN_TEMPLATES)

    @cached_property
    def _files(self) -> list[tuple[str, list[str]]]:
        """(label, lines) of the issue and every template, read once and only when needed."""
        paths = [self._issue]
        for folder in self._folders:
            if folder.is_dir():
                paths.extend(sorted(folder.rglob("*.j2")))
        files = []
        for path in paths:
            try:
                lines = path.read_text(encoding="utf-8").split("\n")
            except OSError:
                continue
            files.append((str(path) if path == self._issue else _rel(path), lines))
        return files

    def find(self, snippet: str, fallback: str, *alternatives: str) -> str:
        """file:line of the first source line holding the snippet (or an alternative)."""
        for wanted in (snippet, *alternatives):
            where = self._search(wanted) if wanted else None
            if where:
                return where
        return fallback

    def _search(self, snippet: str) -> str | None:
        for label, lines in self._files:
            for number, line in enumerate(lines, 1):
                if snippet in line:
                    return f"{label}:{number}"
        return None


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(BUILTIN_TEMPLATES.parent.parent))
    except ValueError:
        return str(path)
