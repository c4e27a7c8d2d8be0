"""`newsletter serve`: the ASGI application for one workspace (Starlette under uvicorn).

Endpoints: one-click unsubscribe (RFC 8058) and its confirmation page, double opt-in
subscribe and confirm, SendGrid's signed Event Webhook, the web version of issues, /healthz.
Every list change goes through newsletter.subscribers' locked, atomic writes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter import optouts
from newsletter import subscribers as subs
from newsletter.config import Config, is_loopback
from newsletter.errors import ConfigError, NewsletterError, SubscriberError
from newsletter.tokens import Claims, load_secret, verify_request_token, verify_token
from newsletter.web import guards, webhooks
from newsletter.web.archive import ARCHIVE_MODES, Archive
from newsletter.web.directory import Directory
from newsletter.web.events import EventStore, web_event
from newsletter.web.optin import CONFIRM_PURPOSE, OptIn
from newsletter.web.pages import Pages
from newsletter.web.requests import RequestStore

FORM_LIMIT = 16 * 1024  # bytes: a subscribe form or an unsubscribe POST
WEBHOOK_LIMIT = 8 * 1024 * 1024  # SendGrid posts batches of events
MAX_NAME = 200
ONE_CLICK = ("List-Unsubscribe", "One-Click")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
HONEYPOT = "website"  # hidden from people; bots fill it in
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # names go into mail headers
NO_STORE = {"Cache-Control": "no-store"}
ARCHIVE_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

log = logging.getLogger("newsletter.serve")


def body_limit(path: str) -> int:
    return WEBHOOK_LIMIT if path.startswith("/webhooks/") else FORM_LIMIT


@dataclass
class Service:
    """The application's state and its request handlers."""

    config: Config
    secret: bytes
    pages: Pages
    directory: Directory
    events: EventStore
    optin: OptIn
    archive: Archive
    webhook_key: Any
    per_ip: guards.RateLimiter
    journal: optouts.Journal  # unsubscribes and provider events, kept before the lists change
    # List writes from this process take turns here before the file lock, which waiters only
    # poll for: 200 unsubscribes at once then queue on a lock that wakes them at once.
    writes: threading.Lock = field(default_factory=threading.Lock)

    # --- helpers -------------------------------------------------------------------------------

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
        cookie = request.cookies.get(guards.CSRF_COOKIE)
        fresh = not cookie or len(cookie) > 64
        if fresh:
            cookie = guards.new_csrf_cookie()
        csrf = {action: guards.csrf_token(self.secret, cookie, action) for action in forms}
        html = self.pages.render(name, csrf=csrf, csrf_field=guards.CSRF_FIELD, **context)
        response = HTMLResponse(html, status_code=status, headers=NO_STORE)
        if forms and fresh:
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

    def base_url(self, request: Request) -> str:
        """Where links point: base_url; without it, the loopback name HostCheck let through."""
        return (self.config.base_url or str(request.base_url)).rstrip("/")

    # --- unsubscribe ------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        """GET: a confirmation page; nothing changes (scanners follow every link in a message)."""
        found = await run_in_threadpool(self.subscriber_key, request.path_params["token"])
        if found is None:
            return self.invalid_link(request)
        return self.page(request, "unsubscribe", forms=(request.url.path,))

    async def unsubscribe(self, request: Request) -> Response:
        """POST: RFC 8058 one-click (no CSRF token, as mailbox providers send it) or the page's form."""
        token = request.path_params["token"]
        form = await self.form(request)
        found = await run_in_threadpool(self.subscriber_key, token)
        if found is None:
            return self.invalid_link(request)
        one_click = form.get(ONE_CLICK[0]) == ONE_CLICK[1]
        if not one_click and not self.csrf_ok(request, form):
            return self.page(
                request, "unsubscribe", 400, forms=(request.url.path,), expired_form=True
            )
        claims, key = found
        via = "one-click" if one_click else "page"
        if not await run_in_threadpool(self._unsubscribe, claims, key, via):
            return self.message(
                request,
                503,
                "Please try again",
                "We could not record your request just now. Please try again in a minute.",
            )
        response = self.page(request, "unsubscribed", forms=(f"/resubscribe/{token}",), token=token)
        response.background = BackgroundTask(self._apply_optouts)
        return response

    def _unsubscribe(self, claims: Claims, key: str | None, via: str) -> bool:
        """Keep the unsubscribe in the journal (durably, without the list); False if it
        could not be kept. The list row changes after the answer, in `_apply_optouts`."""
        try:
            self.journal.unsubscribe(claims.list_name, claims.address_id, key, via)
        except NewsletterError as exc:
            log.error("unsubscribe not recorded for list %s: %s", claims.list_name, exc)
            return False
        try:
            self.events.add([web_event("unsubscribe", key, claims.list_name, via=via)])
        except NewsletterError as exc:  # the journal has it; the event is for reports
            log.warning("unsubscribe event not recorded: %s", exc)
        return True

    def _apply_optouts(self) -> None:
        """What the journal holds that the lists do not show yet, applied where they can be
        written; what cannot be stays pending (sends honour it meanwhile)."""
        try:
            with self.writes:
                optouts.apply_pending(self.config, self.secret, self.journal, self._resolve)
        except NewsletterError as exc:
            log.warning("opt-outs kept, not applied yet: %s", exc)

    def _resolve(self, list_name: str, ids: set[str]) -> tuple[dict[str, str], bool]:
        """Keys of address ids, from the directory's index (read once per change of the file)."""
        found, complete = {}, True
        for ident in ids:
            key, whole = self.directory.lookup(list_name, ident)
            complete = complete and whole
            if key:
                found[ident] = key
        return found, complete

    async def resubscribe(self, request: Request) -> Response:
        """POST from the unsubscribed page: undo, for rows that are `unsubscribed` only."""
        token = request.path_params["token"]
        form = await self.form(request)
        found = await run_in_threadpool(self.subscriber_key, token)
        if found is None:
            return self.invalid_link(request)
        if not self.csrf_ok(request, form):
            return self.page(
                request,
                "unsubscribed",
                400,
                forms=(request.url.path,),
                token=token,
                expired_form=True,
            )
        claims, key = found
        if not await run_in_threadpool(self._resubscribe, claims, key):
            return self.message(
                request,
                409,
                "We cannot subscribe you again from here",
                "Reply to any issue and the editors will sort it out.",
            )
        return self.page(request, "resubscribed", forms=(f"/unsubscribe/{token}",), token=token)

    def _resubscribe(self, claims: Claims, key: str | None) -> bool:
        """Undo an unsubscribe: its journal entry goes first, then the row changes back.

        An entry never applied left the row as it was: taking it back is all there is to do.
        """
        list_name = claims.list_name
        try:
            with self.writes:  # not while the entry is being applied to the list
                entry = self.journal.cancel(list_name, claims.address_id)
        except NewsletterError as exc:
            log.error("resubscribe not recorded for list %s: %s", list_name, exc)
            return False
        untouched = entry is not None and entry.applied_at is None
        key = key or (entry.key if entry else None)
        row = self.directory.row(list_name, key) if key else None
        if row is None or row.status not in ("unsubscribed", "subscribed"):
            done = untouched and (row is None or row.status == "subscribed")
        elif row.status == "subscribed":
            done = True
        else:
            try:
                with self.writes:
                    subs.set_status(
                        self.config.subscribers_dir,
                        list_name,
                        key,
                        "subscribed",
                        source="web:resubscribe",
                    )
                done = True
            except SubscriberError:
                done = False  # suppressed meanwhile, or the list cannot be written now
        if done:
            self.events.add([web_event("resubscribe", key, list_name)])
        return done

    # --- subscribe ------------------------------------------------------------------------------

    def subscribe_form(self, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        chosen = context.pop("list_name", None) or request.query_params.get("list")
        lists = self.lists
        context.setdefault("values", {})
        return self.page(
            request,
            "subscribe",
            status,
            forms=("/subscribe",),
            lists=lists,
            chosen=chosen if chosen in lists else lists[0],
            **context,
        )

    async def subscribe_page(self, request: Request) -> Response:
        return self.subscribe_form(request)

    async def subscribe(self, request: Request) -> Response:
        form = await self.form(request)
        values = {k: v for k in ("email", "name", "list") if isinstance(v := form.get(k), str)}
        email = values.get("email", "").strip()
        name = " ".join(values.get("name", "").split())
        list_name = values.get("list", "") or self.lists[0]
        if not self.csrf_ok(request, form):
            return self.subscribe_form(
                request, 400, values=values, list_name=list_name, error="expired"
            )
        if form.get(HONEYPOT):
            return self.page(request, "check-inbox", hours=self.config.serve.confirm_ttl_hours)
        client = request.client.host if request.client else "unknown"
        if not self.per_ip.allow(client):
            return self.message(
                request,
                429,
                "Too many requests",
                "There have been too many subscribe requests from your network. "
                "Please try again in an hour.",
            )
        error = None
        if list_name not in self.lists:
            error = "list"
        elif len(email) > 254 or len(name) > MAX_NAME or _CONTROL.search(name):
            error = "email" if len(email) > 254 else "name"
        else:
            try:
                subs.normalize_email(email)
            except subs.InvalidEmail:
                error = "email"
        if error:
            return self.subscribe_form(
                request, 400, values=values, list_name=list_name, error=error
            )
        task = BackgroundTask(self._request, list_name, email, name, self.base_url(request))
        response = self.page(request, "check-inbox", hours=self.config.serve.confirm_ttl_hours)
        response.background = task
        return response

    def _request(self, list_name: str, email: str, name: str, base_url: str) -> None:
        outcome = self.optin.request(list_name, email, name, base_url)
        log.info("subscribe request for list %s: %s", list_name, outcome)

    async def confirm_page(self, request: Request) -> Response:
        """GET: a page with a button; nothing changes (scanners and prefetchers open links)."""
        claims = verify_request_token(self.secret, request.path_params["token"], CONFIRM_PURPOSE)
        state = None if claims is None else await run_in_threadpool(self.optin.check, claims)
        if state is None:
            return self.page(request, "invalid-link", 404, confirm=True)
        if state == "confirmed":
            return self.page(request, "confirmed")
        return self.page(request, "confirm", forms=(request.url.path,))

    async def confirm(self, request: Request) -> Response:
        """POST from the confirmation page (CSRF-checked): the address becomes subscribed."""
        form = await self.form(request)
        claims = verify_request_token(self.secret, request.path_params["token"], CONFIRM_PURPOSE)
        if claims is None:
            return self.page(request, "invalid-link", 404, confirm=True)
        if not self.csrf_ok(request, form):
            return self.page(request, "confirm", 400, forms=(request.url.path,), expired_form=True)
        if not await run_in_threadpool(self.optin.confirm, claims):
            return self.page(request, "invalid-link", 404, confirm=True)
        return self.page(request, "confirmed")

    # --- webhook, archive, health --------------------------------------------------------------

    async def sendgrid_webhook(self, request: Request) -> Response:
        if self.webhook_key is None:
            log.warning("sendgrid webhook refused: [serve] webhook_public_key is not set")
            return PlainTextResponse("webhook not configured\n", status_code=503)
        body = await request.body()
        try:
            webhooks.verify(
                self.webhook_key,
                body,
                request.headers,
                tolerance=self.config.serve.webhook_max_age_seconds,
            )
            events = webhooks.parse_events(body)
        except webhooks.WebhookRefused as exc:
            log.warning("sendgrid webhook refused: %s", exc)
            return PlainTextResponse("forbidden\n", status_code=403)
        try:
            outcome = await run_in_threadpool(self._process_events, events)
        except NewsletterError as exc:
            log.error("sendgrid webhook not processed (SendGrid will retry): %s", exc)
            return PlainTextResponse("not processed\n", status_code=500)
        return JSONResponse({"received": outcome.received, "new": outcome.new})

    def _process_events(self, events: list[dict]) -> webhooks.Outcome:
        with self.writes:
            return webhooks.process(
                self.config, self.events, events, self.journal, self.secret, self._resolve
            )

    async def issue(self, request: Request) -> Response:
        name = request.path_params["name"]
        slug = name.removesuffix(".html")
        html = None
        if name.endswith(".html"):
            subscribe_url = f"{self.base_url(request)}/subscribe"
            html = await run_in_threadpool(self.archive.page, slug, subscribe_url)
        if html is None:
            return self.message(request, 404, "Not found", "There is no such issue.")
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "public, max-age=300",
                "Content-Security-Policy": ARCHIVE_CSP,
            },
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.message(request, 404, "Not found", "There is nothing at this address.")

    async def method_not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.message(request, 405, "Not allowed", "This page does not take that request.")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        return self.message(
            request, 500, "Something went wrong", "Please try again in a few minutes."
        )


def check(config: Config) -> None:
    """Refuse to start with settings that cannot work (ConfigError names the key)."""
    serve = config.serve
    if serve.archive not in ARCHIVE_MODES:
        raise ConfigError(
            f"[serve] archive = {serve.archive!r}: use one of {', '.join(ARCHIVE_MODES)}"
        )
    for list_name in serve.subscribe_lists or [config.list]:
        try:
            subs.list_path(config.subscribers_dir, list_name)
        except SubscriberError as exc:
            raise ConfigError(f"[serve] subscribe_lists: {exc}") from None
    if serve.confirm_ttl_hours <= 0 or serve.webhook_max_age_seconds <= 0:
        raise ConfigError("[serve] confirm_ttl_hours and webhook_max_age_seconds must be positive")


def allowed_hosts(config: Config) -> Callable[[str], bool]:
    """Which Host names are answered: base_url's, or without it this machine's loopback only."""
    if config.base_url:
        public = (urlsplit(config.base_url).hostname or "").rstrip(".").lower()
        return lambda host: host == public
    return is_loopback


def create_app(config: Config, env: Mapping[str, str] | None = None) -> Starlette:
    """The application for one workspace; ConfigError before serving anything when misconfigured."""
    from newsletter.providers import make_provider

    check(config)
    secret = load_secret(config.state_dir, env)
    make_provider(config.send.provider, config, env).close()  # confirmations need it working
    key = config.serve.webhook_public_key
    webhook_key = webhooks.load_public_key(key) if key else None
    pages = Pages(config)
    directory = Directory(config.subscribers_dir, secret)
    events = EventStore.for_workspace(config.state_dir)
    journal = optouts.Journal(config.state_dir)
    serve = config.serve
    writes = threading.Lock()
    service = Service(
        writes=writes,
        config=config,
        secret=secret,
        pages=pages,
        directory=directory,
        events=events,
        optin=OptIn(
            config,
            secret,
            pages,
            directory,
            events,
            guards.RateLimiter(serve.confirmations_per_address_per_day, 24 * 3600),
            writes,
            RequestStore.for_workspace(config.state_dir),
        ),
        archive=Archive(config),
        webhook_key=webhook_key,
        per_ip=guards.RateLimiter(serve.subscribe_per_ip_per_hour, 3600),
        journal=journal,
    )
    routes = [
        Route("/unsubscribe/{token}", service.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", service.unsubscribe, methods=["POST"]),
        Route("/resubscribe/{token}", service.resubscribe, methods=["POST"]),
        Route("/subscribe", service.subscribe_page, methods=["GET"]),
        Route("/subscribe", service.subscribe, methods=["POST"]),
        Route("/confirm/{token}", service.confirm_page, methods=["GET"]),
        Route("/confirm/{token}", service.confirm, methods=["POST"]),
        Route("/webhooks/sendgrid", service.sendgrid_webhook, methods=["POST"]),
        Route("/issues/{name}", service.issue, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(guards.Hardening),
            Middleware(guards.HostCheck, allowed=allowed_hosts(config), exempt=("/healthz",)),
            Middleware(guards.BodyLimit, body_limit),
        ],
        exception_handlers={
            404: service.not_found,
            405: service.method_not_allowed,
            500: service.server_error,
        },
    )
    app.state.service = service
    return app


def uvicorn_config(config: Config, host: str, port: int, app: Starlette | None = None):
    """uvicorn settings: proxy headers from [serve] trusted_proxies, no access log with tokens."""
    import uvicorn

    return uvicorn.Config(
        app or create_app(config),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=list(config.serve.trusted_proxies),
        access_log=False,  # guards.Hardening logs requests with tokens redacted
        server_header=False,
        log_level="info",
    )


def run(config: Config, host: str, port: int) -> None:
    """Serve until interrupted."""
    import uvicorn

    settings = uvicorn_config(config, host, port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    log.info("serving %s on http://%s:%d", config.name, host, port)
    uvicorn.Server(settings).run()
