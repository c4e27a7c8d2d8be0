"""The web version of an issue (`/issues/<slug>.html`): rendered for an anonymous reader.

Merge fields get no subscriber (their defaults apply, or they are left empty) and the
unsubscribe link points at the subscribe page, so the page holds nobody's data. By default
only issues the send ledger (the store's on PostgreSQL) shows as sent are served: a draft in
issues/ stays private.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import jinja2
from jinja2.exceptions import SecurityError
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.issue import load_issue, slugify
from newsletter.render import Rendered, Renderer, unsafe
from newsletter.store import uses_postgres

if TYPE_CHECKING:
    import psycopg

    from newsletter.web.pgstore import Pg
    from newsletter.web.service import Service

T = TypeVar("T")

ARCHIVE_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
ARCHIVE_MODES = ("sent", "all", "off")
_CACHE_SIZE = 24  # enough for the feed's entries and the pages read most


def anonymous_html(rendered: Rendered, unsubscribe_url: str) -> str:
    """The issue's HTML with each merge field's value for nobody in particular."""
    context = {**rendered.context, "subscriber": {}, "unsubscribe_url": unsubscribe_url}
    values = {}
    for index, merge in rendered.used_fields.items():
        try:
            value = merge.evaluate(**context)
            values[index] = value if isinstance(value, Markup) else str(value)
        except jinja2.UndefinedError:
            values[index] = ""  # a field without a default, e.g. {{ subscriber.email }}
        except SecurityError as exc:
            raise unsafe(exc, merge.where) from None
    return rendered.fill_values(values).html


class Archive:
    """Issues as web pages for anyone: found by slug, rendered once per change, a few kept."""

    def __init__(self, config: Config, db: Pg | None = None) -> None:
        self.config = config
        self.mode = config.serve.archive
        self.db = db  # serve's pool on PostgreSQL (a command opens a connection of its own)
        self._renderer: Renderer | None = None
        self._cache: OrderedDict[tuple[Path, int, str], str] = OrderedDict()
        self._lock = threading.Lock()  # the renderer's template registry is not thread-safe

    def find(self, slug: str) -> Path | None:
        """The issue file (issues/*.md) whose slug this is."""
        if self.mode == "off" or not SLUG.fullmatch(slug):
            return None
        folder = self.config.issues_dir
        if not folder.is_dir():
            return None
        for path in sorted(folder.glob("*.md")):
            if path.is_file() and slugify(path.stem) == slug:
                return path
        return None

    def published(self, slug: str) -> bool:
        if self.mode == "all":
            return True
        from newsletter.sending.ledger import LEDGER_NAME, SENT, Ledger

        if uses_postgres(self.config):
            return self._pg(
                lambda conn: (
                    conn.execute(
                        "SELECT 1 FROM send_recipients WHERE issue = %s AND state = %s LIMIT 1",
                        (slug, SENT),
                    ).fetchone()
                    is not None
                )
            )
        if not (self.config.state_dir / LEDGER_NAME).is_file():
            return False
        with Ledger.for_workspace(self.config.state_dir) as ledger:
            counts = ledger.counts(slug)
        return any(states.get(SENT) for states in counts.values())

    def first_sent(self) -> dict[str, str]:
        """{issue: when it was first sent} from the store's send ledger (see site.entries)."""
        from newsletter.sending.ledger import LEDGER_NAME, Ledger

        if uses_postgres(self.config):
            from newsletter.sending.pgledger import first_sent

            return self._pg(first_sent)
        if not (self.config.state_dir / LEDGER_NAME).is_file():
            return {}
        with Ledger.for_workspace(self.config.state_dir) as ledger:
            return ledger.first_sent()

    def _pg(self, work: Callable[[psycopg.Connection], T]) -> T:
        """work(conn) on the PostgreSQL store: serve's pool, or a command's own connection."""
        if self.db is not None:
            return self.db.run(work, "cannot read the send ledger")
        from newsletter.store import pg
        from newsletter.store.open import open_checked

        with open_checked(self.config) as conn, pg.errors(pg.url_of(self.config), "the ledger"):
            return work(conn)

    def page(self, slug: str, subscribe_url: str) -> str | None:
        """The issue's web page, or None when there is no such (published) issue."""
        path = self.find(slug)
        if path is None or not self.published(slug):
            return None
        try:
            return self.render(path, subscribe_url)
        except NewsletterError:
            return None

    def render(self, path: Path, subscribe_url: str) -> str | None:
        """The web page of the issue in `path`; None when its front matter says `archive: false`."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        with self._lock:
            key = (path, stamp, subscribe_url)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            if self._renderer is None:
                self._renderer = Renderer(self.config)
            issue = load_issue(path)
            if not issue.archive:
                return None
            html = anonymous_html(self._renderer.render(issue), subscribe_url)
            self._cache[key] = html
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return html


async def issue_page(service: Service, request: Request) -> Response:
    """GET /issues/<slug>.html; anything else under /issues/ is not found."""
    name = request.path_params["name"]
    html = None
    if name.endswith(".html"):
        subscribe_url = f"{service.base_url(request)}/subscribe"
        html = await run_in_threadpool(
            service.archive.page, name.removesuffix(".html"), subscribe_url
        )
    if html is None:
        return service.message(request, 404, "Not found", "There is no such issue.")
    return HTMLResponse(
        html,
        headers={"Cache-Control": "public, max-age=300", "Content-Security-Policy": ARCHIVE_CSP},
    )
