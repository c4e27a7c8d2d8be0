"""[tracking] clicks / opens: an issue's HTML part with its links pointing at serve.

Each link becomes a per-recipient merge value (a token index in the rendered HTML, like a
`{{ subscriber.x }}`), so every provider fills it as it fills merge fields. The unsubscribe
link, the view-in-browser link and any link that is already personal are left alone: they
must work without serve's tracking, and a click on them is no reader's interest in a story.
"""

from __future__ import annotations

import dataclasses
import html
from urllib.parse import urlsplit

from newsletter.config import Config
from newsletter.errors import ConfigError
from newsletter.mergefields import TOKEN
from newsletter.render import Rendered
from newsletter.tokens import address_id
from newsletter.tracking import tokens
from newsletter.tracking.links import ANCHOR, Link, link_text

PIXEL = (
    '<img src="zzm{index}zz" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">'
)
# serve's own pages: never tracked (unsubscribe, confirmation, the web version, the archive)
_OWN_PATHS = ("/unsubscribe/", "/resubscribe/", "/confirm/", "/issues/", "/archive/", "/feed.xml")


def trackable(url: str, base_url: str | None) -> bool:
    """Whether a link of the HTML part is rewritten: http(s), not personal, not serve's own."""
    if TOKEN.search(url) or not url.lower().startswith(("http://", "https://")):
        return False
    if base_url:
        base = urlsplit(base_url)
        parts = urlsplit(url)
        prefix = base.path.rstrip("/")
        if parts.netloc.lower() == base.netloc.lower() and parts.path.startswith(
            tuple(prefix + p for p in _OWN_PATHS)
        ):
            return False
    return True


def issue_links(rendered: Rendered, base_url: str | None) -> list[Link]:
    """The trackable links of the HTML part, in order, each destination once."""
    seen: dict[str, Link] = {}
    for match in ANCHOR.finditer(rendered.html):
        url = html.unescape(match.group(2))
        if trackable(url, base_url) and url not in seen:
            seen[url] = Link(url, link_text(match.group(4)))
    return list(seen.values())


def apply(config: Config, rendered: Rendered) -> Rendered:
    """The rendered issue with [tracking]'s rewrites; the same object when tracking is off."""
    clicks, opens = config.tracking.clicks, config.tracking.opens
    if not (clicks or opens):
        return rendered
    if not config.base_url:
        raise ConfigError(
            "[tracking] clicks and opens need base_url: the links point at `newsletter serve` "
            "there; set base_url or turn tracking off"
        )
    tracked: dict[int, str] = {}
    next_index = len(rendered.merge_fields)

    def swap(match) -> str:
        nonlocal next_index
        url = html.unescape(match.group(2))
        if not trackable(url, config.base_url):
            return match.group(0)
        index, next_index = next_index, next_index + 1
        tracked[index] = url
        head, tail, inner = match.group(1), match.group(3), match.group(4)
        return f'<a{head}href="zzm{index}zz"{tail}>{inner}</a>'

    out = ANCHOR.sub(swap, rendered.html) if clicks else rendered.html
    if opens:
        tracked[next_index] = ""
        pixel = PIXEL.format(index=next_index)
        at = out.lower().rfind("</body>")
        out = out[:at] + pixel + out[at:] if at >= 0 else out + pixel
    return dataclasses.replace(rendered, html=out, tracked=tracked)


def personal_values(
    secret: bytes, base_url: str, issue: str, list_name: str, key: str, tracked: dict[int, str]
) -> dict[int, str]:
    """One recipient's tracking URLs, by token index."""
    ident = address_id(secret, list_name, key)
    base = base_url.rstrip("/")
    out = {}
    for index, url in tracked.items():
        kind = tokens.CLICK if url else tokens.OPEN
        token = tokens.make(secret, tokens.Tracked(kind, issue, list_name, ident, url))
        out[index] = f"{base}/{kind}/{token}"
    return out
