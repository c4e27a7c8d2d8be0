"""The public archive: every issue sent to a list (unless `archive: false`), its index and feed.

One pipeline for both outputs: `entries` reads the ledger and the issue files, `index_html`
and `feed_xml` render them, and either `build` writes a static site or `serve` answers
`/archive/` and `/feed.xml`. Pages come from web.archive, so they are rendered for an
anonymous reader exactly as `/issues/<slug>.html` is.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.config import Config
from newsletter.errors import ConfigError, IssueError, NewsletterError, OutputError
from newsletter.issue import load_issue, slugify
from newsletter.web.archive import ARCHIVE_CSP, Archive, issue_page

if TYPE_CHECKING:
    from newsletter.web.service import Service

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "archive"
_CACHED = {"Cache-Control": "public, max-age=300", "Content-Security-Policy": ARCHIVE_CSP}
_BODY = re.compile(r"<body\b[^>]*>(.*)</body>", re.S | re.I)
FEED_ENTRIES = 20  # feed readers only look at the newest; the index lists every issue
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=True,  # the feed's content is HTML escaped as XML text (type="html")
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Entry:
    slug: str
    title: str
    preheader: str | None
    date: dt.date  # the issue's date, or the day it was first sent
    sent_at: str  # RFC 3339, UTC: when the ledger first recorded a message as accepted
    path: Path


@dataclass(frozen=True)
class Urls:
    """Where the archive lives: `site` is the folder holding index.html and the issue pages."""

    site: str
    feed: str
    subscribe: str | None

    def page(self, slug: str) -> str:
        return f"{self.site}/{slug}.html"


def entries(
    config: Config, skip_broken: bool = False, archive: Archive | None = None
) -> list[Entry]:
    """Archived issues, newest first: sent to a list at least once, not `archive: false`.

    An issue file that no longer parses is an IssueError, or left out with skip_broken (serve).
    `archive` reads the send ledger (serve's, with its pool on PostgreSQL).
    """
    if not config.issues_dir.is_dir():
        return []
    first_sent = (archive or Archive(config)).first_sent()
    found = []
    sub = config.subscribe
    # A welcome email is mailed to newcomers one by one, never published as an issue.
    welcomes = {
        (config.root / w).resolve() for w in (sub.welcome, *sub.welcome_lists.values()) if w
    }
    for path in sorted(config.issues_dir.glob("*.md")):
        sent_at = first_sent.get(slugify(path.stem))
        if sent_at is None or not path.is_file() or path.resolve() in welcomes:
            continue  # a draft, or the welcome email
        try:
            issue = load_issue(path)
        except IssueError:
            if skip_broken:
                continue
            raise
        if not issue.archive:
            continue
        date = issue.date or dt.date.fromisoformat(sent_at[:10])
        found.append(Entry(issue.slug, issue.title, issue.preheader, date, sent_at, path))
    return sorted(found, key=lambda e: (e.date, e.sent_at, e.slug), reverse=True)


def entry_id(config: Config, entry: Entry) -> str:
    """A tag: URI (RFC 4151): stable when base_url or the archive's folder moves."""
    authority = urlsplit(config.base_url or "").hostname or config.sender_domain
    return f"tag:{authority},{entry.sent_at[:10]}:issues/{entry.slug}"


def index_html(config: Config, found: list[Entry], urls: Urls) -> str:
    return _ENV.get_template("index.html.j2").render(
        name=config.name,
        lang=config.lang,
        entries=found,
        feed_url=urls.feed,
        subscribe_url=urls.subscribe,
    )


def feed_xml(config: Config, archive: Archive, found: list[Entry], urls: Urls) -> str:
    """An Atom 1.0 feed of the newest issues with their full web pages as content."""
    items = []
    for entry in found[:FEED_ENTRIES]:
        try:
            html = archive.render(entry.path, urls.subscribe or urls.site)
        except NewsletterError:
            html = None
        if html is None:
            continue
        items.append(
            {
                "id": entry_id(config, entry),
                "title": entry.title,
                "updated": entry.sent_at,
                "url": urls.page(entry.slug),
                "preheader": entry.preheader,
                "html": body_of(html),
            }
        )
    newest = max((item["updated"] for item in items), default="1970-01-01T00:00:00Z")
    authority = urlsplit(config.base_url or "").hostname or config.sender_domain
    return _ENV.get_template("feed.xml.j2").render(
        feed_id=f"tag:{authority},2000:archive",
        name=config.name,
        lang=config.lang,
        author=config.from_name or config.name,
        updated=newest,
        feed_url=urls.feed,
        index_url=f"{urls.site}/",
        entries=items,
    )


def body_of(html: str) -> str:
    """The page's <body> content: feed readers drop <head>, and its <style> would show as text."""
    found = _BODY.search(html)
    return found.group(1).strip() if found else html


def site_urls(config: Config, site_url: str | None = None) -> Urls:
    """The static site's URLs: at site_url, or at base_url's /archive/ as `serve` has it."""
    base = (config.base_url or "").rstrip("/")
    if site_url is None and not base:
        raise ConfigError(
            "archive build needs absolute links for the feed: set base_url in newsletter.toml "
            "or pass --url"
        )
    site = (site_url or f"{base}/archive").rstrip("/")
    return Urls(site=site, feed=f"{site}/feed.xml", subscribe=f"{base}/subscribe" if base else None)


def build(config: Config, out: Path, site_url: str | None = None) -> list[Entry]:
    """Write index.html, feed.xml and one page per archived issue into `out`."""
    urls = site_urls(config, site_url)
    archive = Archive(config)
    found = entries(config, archive=archive)
    pages = {}
    for entry in found:
        html = archive.render(entry.path, urls.subscribe or urls.site)
        if html is not None:
            pages[f"{entry.slug}.html"] = html
    files = {
        **pages,
        "index.html": index_html(config, found, urls),
        "feed.xml": feed_xml(config, archive, found, urls),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A page whose issue left the archive (archive: false) must not stay published.
        for path in config.issues_dir.glob("*.md") if config.issues_dir.is_dir() else ():
            stale = out / f"{slugify(path.stem)}.html"
            if stale.name not in pages and stale.is_file():
                stale.unlink()
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the archive ({exc.strerror or exc})") from None
    return found


async def archive_index(service: Service, request: Request) -> Response:
    """GET /archive/ (and /archive/index.html): the archived issues, newest first."""
    if service.archive.mode == "off":
        return service.message(request, 404, "Not found", "There is no archive here.")
    urls = served_urls(service, request)
    html = await run_in_threadpool(
        lambda: index_html(
            service.config, entries(service.config, skip_broken=True, archive=service.archive), urls
        )
    )
    return HTMLResponse(html, headers=_CACHED)


async def archive_page(service: Service, request: Request) -> Response:
    """GET /archive/<slug>.html: the same page as /issues/<slug>.html."""
    if request.path_params["name"] == "index.html":
        return await archive_index(service, request)
    return await issue_page(service, request)


async def feed(service: Service, request: Request) -> Response:
    """GET /feed.xml: the Atom feed of the archive."""
    if service.archive.mode == "off":
        return service.message(request, 404, "Not found", "There is no feed here.")
    urls = served_urls(service, request)

    def render() -> str:
        return feed_xml(
            service.config,
            service.archive,
            entries(service.config, skip_broken=True, archive=service.archive),
            urls,
        )

    xml = await run_in_threadpool(render)
    return Response(xml, media_type="application/atom+xml; charset=utf-8", headers=_CACHED)


def served_urls(service: Service, request: Request) -> Urls:
    base = service.base_url(request)
    return Urls(site=f"{base}/archive", feed=f"{base}/feed.xml", subscribe=f"{base}/subscribe")
