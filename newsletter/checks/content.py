"""Checkers of what the reader sees: size, subject, postal address, leftovers, placeholders, MJML."""

from __future__ import annotations

import re
from collections.abc import Iterator

from newsletter.checks.context import Context
from newsletter.checks.model import ERROR, WARNING, Problem
from newsletter.render import TOKEN

CLIP_BYTES = 102 * 1024  # Gmail clips the HTML beyond this and hides the rest behind a link
WARN_BYTES = 90 * 1024
SUBJECT_MAX = 78

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
# Markdown reads `*|FNAME|*` as emphasis, so the output shows only `|FNAME|`: look in the source.
_MERGE_TAG = re.compile(r"\*\|[A-Z0-9_]+\|\*")
# What `newsletter init` writes for the author to replace (skeleton/newsletter.toml, importer.py).
INIT_PLACEHOLDERS = (
    "Your street address, city and country",
    "A two- or three-sentence summary of the story",
    "Write the summary here",
    "One line that shows after the subject",
)


def size(c: Context) -> Iterator[Problem]:
    """Gmail clips HTML over 102 KB, footer and unsubscribe link with it."""
    size = len(c.sample.html.encode("utf-8"))
    kb = size / 1024
    if size > CLIP_BYTES:
        yield Problem(
            "html-clipped",
            ERROR,
            "email.html",
            f"HTML is {kb:.1f} KB; Gmail clips messages over 102 KB and hides the "
            "footer with the unsubscribe link",
        )
    elif size > WARN_BYTES:
        yield Problem(
            "html-large",
            WARNING,
            "email.html",
            f"HTML is {kb:.1f} KB, close to Gmail's 102 KB clipping limit",
        )


def subject(c: Context) -> Iterator[Problem]:
    """A subject that is there and fits an inbox line, and a preheader to follow it."""
    issue_file, text = c.locate.issue_path, c.sample.subject
    if not text.strip():
        yield Problem("no-subject", ERROR, issue_file, "the subject is empty")
    elif len(text) > SUBJECT_MAX:
        yield Problem(
            "subject-long",
            WARNING,
            issue_file,
            f"subject is {len(text)} characters; inboxes cut it after about {SUBJECT_MAX}",
        )
    if not c.rendered.preheader:
        yield Problem(
            "no-preheader",
            WARNING,
            issue_file,
            "no preheader: inboxes will show the first words of the body after the subject "
            "(set `preheader:` in the front matter)",
        )


def address(c: Context) -> Iterator[Problem]:
    """The postal address anti-spam law asks for, set and shown in the HTML."""
    postal = " ".join((c.config.postal_address or "").split())
    if not postal:
        yield Problem(
            "no-postal-address",
            ERROR,
            c.locate.config_file,
            "postal_address is not set; anti-spam law (CAN-SPAM, CASL) requires it in the footer",
        )
    elif c.doc is not None and postal not in " ".join(c.doc.text_content().split()):
        yield Problem(
            "no-postal-address",
            ERROR,
            f"template {c.locate.template}",
            "the postal address does not appear in the HTML; show "
            "{{ publication.postal_address }} in the footer",
        )


def leftovers(c: Context) -> Iterator[Problem]:
    """Template tags or merge fields that reached the reader unfilled (the first per part)."""
    sample = c.sample
    issue = c.rendered.issue
    if issue is not None:
        source = "\n".join(filter(None, (issue.subject, issue.preheader, issue.body)))
        tag = _MERGE_TAG.search(source)
        if tag:
            yield Problem(
                "unresolved-merge-field",
                ERROR,
                c.locate.find(tag.group(0), c.locate.issue_path),
                f"{tag.group(0)} is another service's merge tag and reaches the reader as "
                "text; use {{ subscriber.first_name }}-style fields",
            )
    for part, text in (
        ("subject", sample.subject),
        ("email.html", sample.html),
        ("email.txt", sample.text),
    ):
        match = _LEFTOVER.search(text)
        if match:
            snippet = text[max(0, match.start() - 20) : match.end() + 20].replace("\n", " ")
            yield Problem(
                "unresolved-merge-field",
                ERROR,
                c.locate.find(match.group(0), part),
                f"unresolved merge field or template tag in {part}: …{snippet.strip()}…",
            )
        if TOKEN.search(text):
            yield Problem("unresolved-merge-field", ERROR, part, "a merge field was left unfilled")


def placeholders(c: Context) -> Iterator[Problem]:
    """TK, TODO, XXX or lorem ipsum left in the text."""
    for match in _PLACEHOLDER.finditer(c.sample.text):
        yield Problem(
            "placeholder",
            WARNING,
            c.locate.find(match.group(0), "email.txt"),
            f"placeholder text {match.group(0)!r} left in the issue",
        )


def init_placeholders(c: Context) -> Iterator[Problem]:
    """Text `newsletter init` wrote as an example: an error when sending, a warning before."""
    severity = ERROR if c.sending else WARNING
    postal = " ".join((c.config.postal_address or "").split())
    # whitespace collapsed: the text part may have wrapped a phrase onto two lines
    seen = " ".join(" ".join((c.sample.subject, c.rendered.preheader or "", c.sample.text)).split())
    for phrase in INIT_PLACEHOLDERS:
        if phrase in postal:
            yield Problem(
                "init-placeholder",
                severity,
                config_line(c, "postal_address"),
                f"postal_address is still the example {phrase!r}…; set your real address",
            )
        elif phrase in seen:
            yield Problem(
                "init-placeholder",
                severity,
                c.locate.find(phrase, c.locate.issue_path),
                f"{phrase!r}… is the example text `newsletter init` wrote; replace it",
            )


def mjml(c: Context) -> Iterator[Problem]:
    """mj-* elements the compiler does not know, and so drops."""
    for tag in sorted(set(_MJ_TAG.findall(c.rendered.mjml)) - MJML_TAGS):
        yield Problem(
            "mjml",
            WARNING,
            f"template {c.locate.template}",
            f"unknown MJML element <{tag}> is dropped from the email",
        )


def config_line(c: Context, key: str) -> str:
    """newsletter.toml:line of a top-level key, or just the file."""
    where = c.locate.config_file
    try:
        lines = c.config.path.read_text(encoding="utf-8").split("\n") if c.config.path else []
    except OSError:
        return where
    for number, line in enumerate(lines, 1):
        if re.match(rf"\s*{key}\s*=", line):
            return f"{where}:{number}"
    return where
