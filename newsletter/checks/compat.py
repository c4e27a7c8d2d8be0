"""Final HTML -> the CSS and HTML features it uses, checked against caniemail.com's support data.

Only what every client must understand is held against it. Progressive enhancement is
listed but never warned about: `@media (prefers-color-scheme: dark)` blocks, Outlook.com's
`[data-ogsc]` dark-mode hooks, Outlook-only conditional comments (`<!--[if mso]>`),
`@media` itself (a client that ignores a media query shows the base layout) and pure
decoration (rounded corners, shadows, hover effects). A rule inside another `@media`
block is held only against the clients that apply media queries, and what sits inside
`<!--[if !mso]><!-->` is not held against Outlook for Windows.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.checks.model import WARNING, Problem

DATA = Path(__file__).parent.parent / "data" / "caniemail.json"
# The clients most lists are read in; caniemail has more (orange, gmx, protonmail, …).
CLIENTS = ("apple-mail", "gmail", "outlook", "yahoo", "samsung-email", "thunderbird")
OUTLOOK_WINDOWS = ("outlook", "windows")
# Every feature the detection below can find: the refresh script keeps these by default.
DETECTED = (
    "css-at-font-face",
    "css-at-import",
    "css-at-media",
    "css-at-media-prefers-color-scheme",
    "css-background-image",
    "css-border-radius",
    "css-box-shadow",
    "css-display-flex",
    "css-display-grid",
    "css-margin",
    "css-max-width",
    "css-padding",
    "css-position",
    "css-pseudo-class-hover",
    "html-form",
    "html-link",
    "html-style",
    "html-svg",
    "html-video",
)
MEDIA = "css-at-media"
DARK_MEDIA = "css-at-media-prefers-color-scheme"
DARK_REASON = "dark-mode enhancement"
MEDIA_REASON = "a client without media queries shows the base layout"
# Decoration a client can drop without losing anything a reader needs: listed, not warned.
GRACEFUL = {
    "css-border-radius": "decoration: square corners where unsupported",
    "css-box-shadow": "decoration: no shadow where unsupported",
    "css-pseudo-class-hover": "decoration: no hover effect (phones have none anyway)",
}

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_NOT_MSO = re.compile(r"<!--\[if\s+!mso[^\]]*\]><!-->.*?<!--<!\[endif\]-->", re.S | re.I)
_DARK = re.compile(r"prefers-color-scheme", re.I)
_OUTLOOK_DARK = re.compile(r"\[data-ogs[bc]\]", re.I)
_BOX = {
    f"{p}{s}" for p in ("margin", "padding") for s in ("", "-top", "-right", "-bottom", "-left")
}
_RADIUS = re.compile(r"border(-(top|bottom)-(left|right))?-radius$")


@dataclass(frozen=True)
class Feature:
    slug: str
    title: str
    url: str
    # (family, platform) -> the latest tested version's value: "y", "a #1", "n", "u"
    support: dict[tuple[str, str], str]
    notes: dict[str, str]


@dataclass(frozen=True)
class Usage:
    slug: str
    example: str  # what the email has, e.g. "display: flex" or "<svg>"
    context: str = ""  # "" (every client), "media", or why it is an enhancement


@dataclass
class FeatureReport:
    """One feature the email uses and the clients that lack it."""

    feature: Feature
    example: str
    enhancement: str = ""  # why it is not warned about, when it is not
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    partial: list[tuple[str, str, str]] = field(default_factory=list)  # family, platform, notes

    @property
    def warns(self) -> bool:
        return bool(self.unsupported) and not self.enhancement


@dataclass(frozen=True)
class SupportData:
    features: dict[str, Feature]
    families: dict[str, str]
    platforms: dict[str, str]
    about: dict

    def client_name(self, family: str, platforms: list[str]) -> str:
        name = self.families.get(family, family)
        return f"{name} ({', '.join(self.platforms.get(p, p) for p in platforms)})"


@functools.lru_cache(maxsize=4)
def load_data(path: Path = DATA) -> SupportData:
    """caniemail's api/data.json (or the shipped subset), latest version per platform."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    features = {}
    for item in raw["data"]:
        support = {}
        for family, platforms in item.get("stats", {}).items():
            for platform, versions in platforms.items():
                if versions:
                    # caniemail lists versions oldest first; the last one is today's client.
                    support[(family, platform)] = list(versions.values())[-1]
        features[item["slug"]] = Feature(
            slug=item["slug"],
            title=item.get("title") or item["slug"],
            url=item.get("url") or f"https://www.caniemail.com/features/{item['slug']}/",
            support=support,
            notes={str(k): v for k, v in (item.get("notes_by_num") or {}).items()},
        )
    names = raw.get("nicenames", {})
    return SupportData(
        features, names.get("family", {}), names.get("platform", {}), raw.get("_about", {})
    )


def report(html: str, data: SupportData | None = None) -> list[FeatureReport]:
    """Every known feature the HTML uses, with the clients (of CLIENTS) that lack or limit it."""
    data = data or load_data()
    everyone = _usages(html)
    for_outlook = _usages(_NOT_MSO.sub("", html))
    media = data.features.get(MEDIA)
    reports = []
    for slug, usages in everyone.items():
        feature = data.features.get(slug)
        if feature is None:
            continue
        relied_on = [u for u in usages if u.context in ("", "media") and slug not in GRACEFUL]
        out = FeatureReport(feature, (relied_on or usages)[0].example)
        if not relied_on:
            out.enhancement = GRACEFUL.get(slug) or usages[0].context
        for (family, platform), value in feature.support.items():
            used = for_outlook if (family, platform) == OUTLOOK_WINDOWS else everyone
            contexts = {u.context for u in used.get(slug, [])}
            if relied_on or slug in GRACEFUL:  # pure enhancements: every client, for information
                contexts &= {"", "media"}
            if family not in CLIENTS or not contexts:
                continue
            if contexts == {"media"} and not _applies_media(media, family, platform):
                continue  # only used inside @media, which this client ignores
            letter, notes = _parse(value)
            if letter == "n":
                out.unsupported.append((family, platform))
            elif letter == "a" or notes:
                text = " ".join(feature.notes.get(n, "") for n in notes).strip()
                out.partial.append((family, platform, text))
        reports.append(out)
    return sorted(reports, key=lambda r: (not r.warns, r.feature.title.lower()))


def check_compat(
    html: str, data: SupportData | None = None, reports: list[FeatureReport] | None = None
) -> list[Problem]:
    """One `client-support` warning per feature the email relies on that some clients lack."""
    data = data or load_data()
    problems = []
    for item in report(html, data) if reports is None else reports:
        if item.warns:
            clients = ", ".join(
                data.client_name(family, platforms)
                for family, platforms in grouped(item.unsupported).items()
            )
            problems.append(
                Problem(
                    "client-support",
                    WARNING,
                    _where(html, item.example),
                    f"{item.feature.title} (`{item.example}`) is not supported by {clients}; "
                    f"see {item.feature.url}",
                )
            )
    return problems


def grouped(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """{family: [platform, …]} from (family, platform) pairs, in order."""
    out: dict[str, list[str]] = {}
    for family, platform in pairs:
        out.setdefault(family, []).append(platform)
    return out


def _parse(value: str) -> tuple[str, list[str]]:
    letter, *notes = value.split()
    return letter[:1], [n.lstrip("#") for n in notes if n.startswith("#")]


def _applies_media(media: Feature | None, family: str, platform: str) -> bool:
    if media is None:
        return True
    value = media.support.get((family, platform))
    return value is None or _parse(value)[0] != "n"


def _where(html: str, example: str) -> str:
    """email.html:LINE of the first place the example is written (spacing may differ)."""
    if example.startswith("<"):
        pattern = re.escape(example.split()[0].rstrip(">"))
    else:
        prop, colon, value = example.partition(":")
        pattern = re.escape(example)
        if colon and not example.startswith("@"):
            pattern = rf"{re.escape(prop)}\s*:\s*{re.escape(value.strip())}"
    match = re.search(pattern, html, re.I)
    return f"email.html:{html.count(chr(10), 0, match.start()) + 1}" if match else "email.html"


# Detection ---------------------------------------------------------------------------


def _usages(html: str) -> dict[str, list[Usage]]:
    """slug -> where the HTML uses it; conditional comments are comments to lxml, so skipped."""
    import lxml.html

    found: dict[str, list[Usage]] = {}
    try:
        doc = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return found

    def add(usage: Usage) -> None:
        found.setdefault(usage.slug, []).append(usage)

    for element in doc.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        tag = tag.rpartition("}")[2].lower()
        if tag == "style":
            add(Usage("html-style", "<style>"))
            media = element.get("media") or ""
            for usage in _css_usages(element.text or "", (media,) if media else ()):
                add(usage)
        elif tag == "link" and "stylesheet" in (element.get("rel") or "").lower():
            add(Usage("html-link", '<link rel="stylesheet">'))
        elif tag in ("svg", "video", "form"):
            add(Usage(f"html-{tag}", f"<{tag}>"))
        style = element.get("style") if tag else None
        if style:
            for prop, value in _declarations(style):
                for slug in _property_features(prop, value):
                    add(Usage(slug, f"{prop}: {value}"))
    return found


def _css_usages(css: str, media: tuple[str, ...] = ()) -> Iterator[Usage]:
    for at, selector, body, enclosing in _rules(css, media):
        dark = any(_DARK.search(m) for m in enclosing)
        context = DARK_REASON if dark else "media" if enclosing else ""
        if at:
            name = at.split()[0].lower()
            if name == "@import":
                yield Usage("css-at-import", at, context)
            elif name == "@font-face":
                yield Usage("css-at-font-face", "@font-face", context)
            continue
        if enclosing:
            query = enclosing[-1].removeprefix("@media").strip()
            yield Usage(
                DARK_MEDIA if dark else MEDIA,
                f"@media {query}",
                DARK_REASON if dark else MEDIA_REASON,
            )
        if _OUTLOOK_DARK.search(selector):
            context = "Outlook.com dark-mode hook"
        if ":hover" in selector.lower():
            yield Usage("css-pseudo-class-hover", f"{selector.strip()}", context)
        for prop, value in _declarations(body):
            for slug in _property_features(prop, value):
                yield Usage(slug, f"{prop}: {value}", context)


def _rules(css: str, media: tuple[str, ...]) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
    """(at-rule head or "", selector, declarations, enclosing @media preludes), in order."""
    css = _COMMENT.sub("", css)
    i, n = 0, len(css)
    while i < n:
        j = i
        while j < n and css[j] not in "{;":
            j += 1
        head = css[i:j].strip()
        if j >= n:
            return
        if css[j] == ";":
            if head.startswith("@"):
                yield head, "", "", media
            i = j + 1
            continue
        end = _closing(css, j)
        body = css[j + 1 : end]
        lowered = head.lower()
        if lowered.startswith(("@media", "@supports")):
            inner = media + (head,) if lowered.startswith("@media") else media
            yield from _rules(body, inner)
        elif head.startswith("@"):
            yield head, "", body, media
        else:
            yield "", head, body, media
        i = end + 1


def _closing(css: str, start: int) -> int:
    depth = 0
    for k in range(start, len(css)):
        if css[k] == "{":
            depth += 1
        elif css[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(css)


def _declarations(body: str) -> Iterator[tuple[str, str]]:
    """(property, value) pairs; semicolons inside url(…) or quotes do not split."""
    depth, quote, start = 0, "", 0
    parts = []
    for k, char in enumerate(body):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0:
            parts.append(body[start:k])
            start = k + 1
    parts.append(body[start:])
    for part in parts:
        prop, colon, value = part.partition(":")
        if colon and prop.strip():
            yield prop.strip().lower(), " ".join(value.split())


def _property_features(prop: str, value: str) -> list[str]:
    value = value.lower().replace("!important", "").strip()
    if prop == "display":
        if value in ("flex", "inline-flex"):
            return ["css-display-flex"]
        if value in ("grid", "inline-grid"):
            return ["css-display-grid"]
    elif prop == "position":
        return [] if value in ("static", "inherit", "initial", "unset", "") else ["css-position"]
    elif prop in ("background", "background-image"):
        return ["css-background-image"] if "url(" in value else []
    elif _RADIUS.match(prop):
        return ["css-border-radius"]
    elif prop == "max-width":
        return ["css-max-width"]
    elif prop == "box-shadow":
        return [] if value == "none" else ["css-box-shadow"]
    elif prop in _BOX:
        return ["css-margin" if prop.startswith("margin") else "css-padding"]
    return []
