"""What every handler of `serve` shares: the workspace's state, pages with CSRF tokens, forms."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter import optouts
from newsletter.config import Config
from newsletter.tokens import Claims, verify_token
from newsletter.web import guards
from newsletter.web.archive import Archive
from newsletter.web.directory import Directory
from newsletter.web.events import EventStore
from newsletter.web.optin import OptIn
from newsletter.web.pages import Pages
from newsletter.web.pglists import PgLists

FORM_LIMIT = 16 * 1024  # bytes: a subscribe form or an unsubscribe POST
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NO_STORE = {"Cache-Control": "no-store"}
ONE_CLICK_FIELD = ("List-Unsubscribe", "One-Click")
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"

log = logging.getLogger("newsletter.serve")


@dataclass
class Service:
    """The application's state, and the pieces its handlers answer with."""

    config: Config
    secret: bytes
    pages: Pages
    directory: Directory
    events: EventStore
    optin: OptIn
    archive: Archive
    webhook_key: Any
    per_ip: guards.RateLimiter
    journal: optouts.Journal | None  # files store: unsubscribes and provider events, kept
    # before the lists change (None on PostgreSQL, where `pg` changes the rows at once)
    resend_webhook_secret: bytes | None = None  # RESEND_WEBHOOK_SECRET, decoded
    # List writes from this process take turns here before the file lock, which waiters only
    # poll for: 200 unsubscribes at once then queue on a lock that wakes them at once.
    writes: threading.Lock = field(default_factory=threading.Lock)
    postmark_webhook: Any = None  # providers.postmark.webhook.Credentials; None = refused
    mailgun_webhook_key: bytes | None = None  # MAILGUN_WEBHOOK_SIGNING_KEY; None = refused
    mailgun_tokens: Any = None  # providers.mailgun.webhook.Tokens: signatures already used
    pg: PgLists | None = None  # PostgreSQL store: list changes, each one transaction

    @property
    def lists(self) -> list[str]:
        return list(self.config.serve.subscribe_lists) or [self.config.list]

    def page(
        self,
        request: Request,
        name: str,
        status: int = 200,
        forms: tuple[str, ...] = (),
        **context: Any,
    ) -> HTMLResponse:
        """A page; `forms` are the actions it posts to, each given a CSRF token."""
        cookie, fresh = self._csrf_cookie(request)
        csrf = {action: guards.csrf_token(self.secret, cookie, action) for action in forms}
        html = self.pages.render(name, csrf=csrf, csrf_field=guards.CSRF_FIELD, **context)
        response = HTMLResponse(html, status_code=status, headers=NO_STORE)
        return self._with_cookie(request, response, cookie, fresh) if forms else response

    @staticmethod
    def _csrf_cookie(request: Request) -> tuple[str, bool]:
        """The request's CSRF cookie, or a new one (True)."""
        cookie = request.cookies.get(guards.CSRF_COOKIE)
        if not cookie or len(cookie) > 64:
            return guards.new_csrf_cookie(), True
        return cookie, False

    @staticmethod
    def _with_cookie(request: Request, response: Response, cookie: str, fresh: bool) -> Response:
        if fresh:
            response.set_cookie(
                guards.CSRF_COOKIE,
                cookie,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response

    def message(self, request: Request, status: int, title: str, text: str) -> HTMLResponse:
        return self.page(request, "message", status, title=title, text=text)

    def invalid_link(self, request: Request) -> HTMLResponse:
        """The one answer for forged, truncated, expired and unknown tokens alike."""
        return self.page(request, "invalid-link", 404)

    async def form(self, request: Request) -> FormData:
        content_type = request.headers.get("content-type", "")
        try:
            if request.method == "POST" and await request.body() == ONE_CLICK_BODY:
                return FormData([ONE_CLICK_FIELD])  # RFC 8058's fixed body, without a parser
            if not content_type.startswith(FORM_TYPES):
                # Lenient with senders that omit the type: RFC 8058 fixes the body anyway.
                body = (await request.body()).decode("utf-8", "replace")
                return FormData(parse_qsl(body, keep_blank_values=True, max_num_fields=20))
            return await request.form(max_files=0, max_fields=20, max_part_size=FORM_LIMIT)
        except (HTTPException, guards.BodyTooLarge):
            raise
        except Exception:  # a malformed body: treat it as empty, never as a server error
            return FormData()

    def csrf_ok(self, request: Request, form: FormData) -> bool:
        submitted = form.get(guards.CSRF_FIELD)
        return guards.csrf_ok(
            self.secret,
            request.cookies.get(guards.CSRF_COOKIE),
            request.url.path,
            submitted if isinstance(submitted, str) else None,
        )

    def subscriber_key(self, token: str) -> tuple[Claims, str | None] | None:
        """(claims, key of the row) of a genuine unsubscribe token, or None.

        The key is None when the list cannot be read as far as that row (a malformed row):
        the token is still good, and the unsubscribe is kept until the list can be read.
        A list read whole without the row has nobody to unsubscribe: None.
        """
        claims = verify_token(self.secret, token)
        if claims is None:
            return None
        key, complete = self.directory.lookup(claims.list_name, claims.address_id)
        return (claims, key) if key or not complete else None

    async def token_owner(self, request: Request) -> tuple[Claims, str | None] | None:
        """subscriber_key() of the request's {token}, off the event loop (it may read a list)."""
        return await run_in_threadpool(self.subscriber_key, request.path_params["token"])

    def base_url(self, request: Request) -> str:
        """Where links point: base_url; without it, the loopback name HostCheck let through."""
        return (self.config.base_url or str(request.base_url)).rstrip("/")

    # Error pages ------------------------------------------------------------------------------

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.message(request, 404, "Not found", "There is nothing at this address.")

    async def method_not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.message(request, 405, "Not allowed", "This page does not take that request.")

    async def store_unavailable(self, request: Request, exc: Exception) -> Response:
        """The PostgreSQL store could not be reached: nothing was recorded, so say so."""
        log.error("%s %s: %s", request.method, guards.redact(request.url.path), exc)
        return self.message(
            request,
            503,
            "Please try again",
            "We could not record your request just now. Please try again in a minute.",
        )

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.message(
            request, 500, "Something went wrong", "Please try again in a few minutes."
        )
