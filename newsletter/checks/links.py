"""Checkers of where the email points: the unsubscribe link, images and links."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from newsletter.checks.context import Context, text_of
from newsletter.checks.model import ERROR, WARNING, Problem

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"}


def unsubscribe(c: Context) -> Iterator[Problem]:
    """A visible unsubscribe link in the HTML, the URL in the text, and an https one to offer."""
    url = c.sample.unsubscribe_url
    links = [a for a in c.anchors if a.get("href") == url]
    if not any(visible(a) and text_of(a) for a in links):
        yield Problem(
            "no-unsubscribe",
            ERROR,
            f"template {c.locate.template}",
            "no visible unsubscribe link: link {{ unsubscribe_url }} in the footer",
        )
    if url not in c.sample.text:
        yield Problem(
            "no-unsubscribe-text",
            ERROR,
            f"template {c.locate.template}",
            "the plain-text part has no unsubscribe URL",
        )
    if not c.config.base_url:
        yield Problem(
            "no-base-url",
            WARNING,
            c.locate.config_file,
            "base_url is not set: unsubscribe links fall back to mailto, and Gmail and Yahoo "
            "want one-click https unsubscribe (RFC 8058)",
        )


def images(c: Context) -> Iterator[Problem]:
    """Images with alt text (unless decorative) and an absolute https source."""
    if c.doc is None:
        return
    for img in c.doc.xpath("//img"):
        src = (img.get("src") or "").strip()
        decorative = img.get("role") == "presentation" or img.get("aria-hidden") == "true"
        if not (img.get("alt") or "").strip() and not decorative:
            yield Problem(
                "image-no-alt",
                WARNING,
                c.locate.find(f"]({src}", "email.html", src),
                f"image {src or '(no src)'} has no alt text",
            )
        problem = url_problem(src, image=True)
        if problem:
            where = c.locate.find(f"]({src}", "email.html", src)
            yield Problem("image-src", WARNING, where, f"image {problem}")


def links(c: Context) -> Iterator[Problem]:
    """Links (other than unsubscribe) with an absolute https, mailto: or tel: target."""
    for a in c.anchors:
        href = (a.get("href") or "").strip()
        if href == c.sample.unsubscribe_url:
            continue
        problem = url_problem(href, image=False)
        if problem:
            label = text_of(a)[:40] or href
            yield Problem(
                "link",
                WARNING,
                c.locate.find(f"]({href}", "email.html", f'"{href}"', label),
                f"link “{label}” {problem}",
            )


def url_problem(url: str, image: bool) -> str | None:
    """What is wrong with a link or image URL for an email, or None."""
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


def visible(element) -> bool:
    """Whether no inline style on the element or its ancestors hides it."""
    for node in (element, *element.iterancestors()):
        style = (node.get("style") or "").replace(" ", "").lower()
        if "display:none" in style or "visibility:hidden" in style or "max-height:0" in style:
            return False
    return True
