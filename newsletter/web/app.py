"""`newsletter serve`: the ASGI application for one workspace, assembled (Starlette under uvicorn).

Endpoints: one-click unsubscribe (RFC 8058) and its confirmation page (web.unsubscribe),
double opt-in subscribe and confirm (web.subscribe, web.optin), SendGrid's signed Event
Webhook (web.webhooks), Postmark's webhooks (web.webhooks_postmark), Mailgun's signed
webhooks (web.webhooks_mailgun), tracked clicks and opens (web.tracking), the web version of issues (web.archive), the archive and its
Atom feed (web.site), /healthz. Every
list change goes through newsletter.subscribers' locked, atomic writes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter import optouts
from newsletter import subscribers as subs
from newsletter.config import Config, is_loopback
from newsletter.errors import ConfigError, StoreError, SubscriberError
from newsletter.store import uses_postgres
from newsletter.tokens import load_secret
from newsletter.web import (
    archive,
    guards,
    site,
    subscribe,
    tracking,
    unsubscribe,
    webhooks,
    webhooks_mailgun,
    webhooks_postmark,
    webhooks_resend,
    webhooks_ses,
)
from newsletter.web.archive import ARCHIVE_MODES, Archive
from newsletter.web.directory import Directory
from newsletter.web.events import EventStore
from newsletter.web.oneclick import OneClick
from newsletter.web.optin import OptIn
from newsletter.web.pages import Pages
from newsletter.web.requests import RequestStore
from newsletter.web.service import FORM_LIMIT, NO_STORE, Service
from newsletter.web.welcome import Welcome
from newsletter.web.welcome import check as check_welcome

WEBHOOK_LIMIT = 8 * 1024 * 1024  # SendGrid posts batches of events

log = logging.getLogger("newsletter.serve")

Handler = Callable[[Service, Request], Awaitable[Response]]


def body_limit(path: str) -> int:
    return WEBHOOK_LIMIT if path.startswith("/webhooks/") else FORM_LIMIT


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
    check_welcome(config, serve.subscribe_lists or [config.list])


def allowed_hosts(config: Config) -> Callable[[str], bool]:
    """Which Host names are answered: base_url's, or without it this machine's loopback only."""
    if config.base_url:
        public = (urlsplit(config.base_url).hostname or "").rstrip(".").lower()
        return lambda host: host == public
    return is_loopback


def make_service(config: Config, env: Mapping[str, str] | None = None) -> Service:
    """The workspace's state for serving; ConfigError when misconfigured."""
    from newsletter import providers
    from newsletter.providers.mailgun import webhook as mailgun_webhook
    from newsletter.providers.postmark.webhook import Credentials
    from newsletter.providers.resend import webhook as resend_webhook
    from newsletter.providers.sendgrid.webhook import load_public_key

    check(config)
    secret = load_secret(config.state_dir, env)
    providers.check(config.send.provider, config, env)  # confirmations need it working
    key = config.serve.webhook_public_key
    webhook_key = load_public_key(key) if key else None
    resend_secret = resend_webhook.load_secret(os.environ if env is None else env)
    mailgun_key = mailgun_webhook.load_key(os.environ if env is None else env)
    pages = Pages(config)
    serve = config.serve
    writes = threading.Lock()
    shared = _postgres(config, secret) if uses_postgres(config) else None
    if shared is not None:
        directory, events, requests, per_ip, per_address, lists = shared
        journal = None
    else:
        directory = Directory(config.subscribers_dir, secret)
        threading.Thread(target=directory.warm, name="index-links", daemon=True).start()
        events = EventStore.for_workspace(config.state_dir)
        requests = RequestStore.for_workspace(config.state_dir)
        per_ip = guards.RateLimiter(serve.subscribe_per_ip_per_hour, 3600)
        per_address = guards.RateLimiter(serve.confirmations_per_address_per_day, 24 * 3600)
        journal, lists = optouts.Journal(config.state_dir), None
    optin = OptIn(
        config,
        secret,
        pages,
        directory,
        events,
        per_address,
        writes,
        requests,
        welcome=Welcome(config, secret, pg=lists.db if lists is not None else None),
        pg=lists,
    )
    return Service(
        writes=writes,
        config=config,
        secret=secret,
        pages=pages,
        directory=directory,
        events=events,
        optin=optin,
        archive=Archive(config, lists.db if lists is not None else None),
        webhook_key=webhook_key,
        per_ip=per_ip,
        journal=journal,
        postmark_webhook=Credentials.load(config, env),
        resend_webhook_secret=resend_secret,
        mailgun_webhook_key=mailgun_key,
        mailgun_tokens=mailgun_webhook.Tokens(),
        pg=lists,
    )


def _postgres(config: Config, secret: bytes):
    """serve's stores on PostgreSQL, through one pool of `[store] pool_size` connections:
    (directory, events, requests, per-IP limiter, per-address limiter, list changes).
    StoreError when the store cannot be reached or its schema is not current."""
    from newsletter.store import migrations
    from newsletter.store import pg as store_pg
    from newsletter.web.pglists import PgDirectory, PgLists
    from newsletter.web.pgstore import Pg, PgEvents, PgRateLimiter, PgRequests

    db = Pg(store_pg.url_of(config), config.store.pool_size)
    db.run(migrations.check, "cannot read the store's schema version")
    serve = config.serve
    directory = PgDirectory(db, secret)
    # Index the links of rows added since the last start (all of them, the first time) while
    # serving: a lookup that misses does the same for its own list meanwhile.
    threading.Thread(target=directory.warm, name="index-links", daemon=True).start()
    return (
        directory,
        PgEvents(db),
        PgRequests(db),
        PgRateLimiter(db, "subscribe-ip", serve.subscribe_per_ip_per_hour, 3600),
        PgRateLimiter(db, "confirm-address", serve.confirmations_per_address_per_day, 86400),
        PgLists(db),
    )


async def healthz(service: Service, request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


def create_app(config: Config, env: Mapping[str, str] | None = None) -> OneClick:
    """The application for one workspace; ConfigError before serving anything when misconfigured."""
    service = make_service(config, env)

    def route(path: str, handler: Handler, method: str) -> Route:
        return Route(path, partial(handler, service), methods=[method])

    routes = [
        route("/unsubscribe/{token}", unsubscribe.page, "GET"),
        route("/unsubscribe/{token}", unsubscribe.unsubscribe, "POST"),
        route("/resubscribe/{token}", unsubscribe.resubscribe, "POST"),
        route("/subscribe", subscribe.page, "GET"),
        route("/subscribe", subscribe.subscribe, "POST"),
        route("/confirm/{token}", subscribe.confirm_page, "GET"),
        route("/confirm/{token}", subscribe.confirm, "POST"),
        route("/webhooks/sendgrid", webhooks.receive, "POST"),
        route("/webhooks/postmark", webhooks_postmark.receive, "POST"),
        route("/webhooks/resend", webhooks_resend.receive, "POST"),
        route("/webhooks/ses", webhooks_ses.receive, "POST"),
        route("/webhooks/mailgun", webhooks_mailgun.receive, "POST"),
        route("/issues/{name}", archive.issue_page, "GET"),
        route("/archive/", site.archive_index, "GET"),
        route("/archive/{name}", site.archive_page, "GET"),
        route("/feed.xml", site.feed, "GET"),
        route("/c/{token}", tracking.click, "GET"),
        route("/o/{token}", tracking.open_pixel, "GET"),
        route("/healthz", healthz, "GET"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if service.pg is not None:  # the pool's connections, closed with the server
                service.pg.db.close()

    app = Starlette(
        lifespan=lifespan,
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
            StoreError: service.store_unavailable,
        },
    )
    app.state.service = service
    # One-click unsubscribes come in bursts: answered in front of the application (web.oneclick).
    return OneClick(app, service, allowed_hosts(config), body_limit)


def uvicorn_settings(config: Config, host: str, port: int) -> dict:
    """uvicorn settings: proxy headers from [serve] trusted_proxies, no access log with tokens."""
    return dict(
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=list(config.serve.trusted_proxies),
        access_log=False,  # guards.Hardening logs requests with tokens redacted
        server_header=False,
        log_level="info",
    )


def uvicorn_config(config: Config, host: str, port: int, app: OneClick | None = None):
    import uvicorn

    return uvicorn.Config(app or create_app(config), **uvicorn_settings(config, host, port))


def run(config: Config, host: str, port: int, workers: int = 1) -> None:
    """Serve until interrupted; with workers > 1, that many processes (web.workers)."""
    import uvicorn

    if workers > 1:
        from newsletter.web import workers as several

        several.run(config, host, port, workers)
        return
    settings = uvicorn_config(config, host, port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    log.info("serving %s on http://%s:%d", config.name, host, port)
    uvicorn.Server(settings).run()
