"""The links of an issue's HTML part with their text, kept per issue when it is sent.

`.newsletter/links/<issue>.json` lists them: the report names each clicked link by its text,
and `serve` redirects a click only to a destination this file lists for the token's issue.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from newsletter.files import make_folder

LINKS_DIR = "links"
# premailer writes every attribute in double quotes
ANCHOR = re.compile(r"<a\b([^>]*?)\bhref=\"([^\"]*)\"([^>]*)>(.*?)</a>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Link:
    url: str
    text: str


def link_text(inner_html: str) -> str:
    """What a reader sees of a link: its text, or an image's alt text."""
    text = " ".join(html.unescape(_TAG.sub(" ", inner_html)).split())
    if not text:
        alt = re.search(r"\balt=\"([^\"]*)\"", inner_html)
        text = html.unescape(alt.group(1)).strip() if alt else ""
    return text or "(no text)"


def path_for(state_dir: Path, issue: str) -> Path:
    return state_dir / LINKS_DIR / f"{issue}.json"


def write_links(state_dir: Path, issue: str, links: list[Link]) -> None:
    folder = state_dir / LINKS_DIR
    make_folder(folder, private=True)
    data = [{"url": link.url, "text": link.text} for link in links]
    tmp = folder / f".{issue}.json.tmp"
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path_for(state_dir, issue))


def read_links(state_dir: Path, issue: str) -> list[Link]:
    """The issue's links as last sent; [] when it was sent before links were kept."""
    try:
        data = json.loads(path_for(state_dir, issue).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [
        Link(str(item.get("url", "")), str(item.get("text", "")))
        for item in data
        if isinstance(item, dict)
    ]
