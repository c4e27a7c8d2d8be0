"""Double opt-in: a subscribe request stores a new address as `pending` (an unsubscribed one
stays unsubscribed), opens a request and mails a signed, expiring link bound to that request;
the button on the link's page makes the address `subscribed`.

Requests are handled after the response has gone out, so the answer (and its timing) is the
same whether the address was new, pending, already subscribed or suppressed.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field, replace

from newsletter import optouts
from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.errors import NewsletterError, SubscriberError
from newsletter.message import OutgoingMessage, single_message
from newsletter.providers import Status, make_provider
from newsletter.tokens import Claims, address_id, make_request_token
from newsletter.web.directory import Directory
from newsletter.web.events import EventStore, web_event
from newsletter.web.guards import RateLimiter
from newsletter.web.pages import Pages
from newsletter.web.pglists import PgLists
from newsletter.web.requests import Request, RequestStore
from newsletter.web.welcome import Welcome

CONFIRM_PURPOSE = "c"
CONFIRMABLE = ("pending", "unsubscribed")  # rows a confirmation may make `subscribed`
CONFIRMATIONS_SLUG = "_confirmations"  # outbox/_confirmations/: never an issue's slug

log = logging.getLogger("newsletter.serve")


def confirmation_message(
    config: Config,
    secret: bytes,
    pages: Pages,
    list_name: str,
    email: str,
    confirm_url: str,
    hours: int,
) -> OutgoingMessage:
    """The confirmation mail, through the same message code (and List-Unsubscribe) as issues."""
    subject = f"Confirm your subscription to {config.name}"
    context = {"confirm_url": confirm_url, "hours": hours, "subject": subject}
    return single_message(
        config,
        secret,
        to_email=email,
        subject=subject,
        html=pages.render("confirm-email", **context),
        text=pages.render_text("confirm-email", **context),
        list_name=list_name,
        slug=CONFIRMATIONS_SLUG,
    )


@dataclass
class OptIn:
    config: Config
    secret: bytes
    pages: Pages
    directory: Directory
    events: EventStore
    per_address: RateLimiter
    writes: threading.Lock  # shared with the other list writers of this process
    requests: RequestStore
    sending: threading.Lock = field(default_factory=threading.Lock)
    welcome: Welcome | None = None  # [subscribe] welcome: mailed after a confirmation
    pg: PgLists | None = None  # on PostgreSQL: rows change there, each confirm one transaction

    @property
    def hours(self) -> int:
        return self.config.serve.confirm_ttl_hours

    def request(self, list_name: str, email: str, name: str, base_url: str) -> str:
        """Handle one subscribe request; the outcome is for logs and tests, never for the page."""
        key = subs.email_key(email)
        if not self.per_address.allow(key):
            return "rate-limited"
        request_id = secrets.token_urlsafe(12)
        try:
            with self.writes:
                stored = self._store_request(list_name, email, name, key, request_id)
        except NewsletterError as exc:  # suppressed, or the list/store cannot be written
            log.info("subscribe request not taken: %s", type(exc).__name__)
            return "refused"
        if stored not in CONFIRMABLE:
            return f"skipped ({stored})"
        expires = int(time.time()) + self.hours * 3600
        token = make_request_token(
            self.secret, list_name, key, CONFIRM_PURPOSE, request_id, expires
        )
        url = f"{base_url.rstrip('/')}/confirm/{token}"
        try:
            message = confirmation_message(
                self.config, self.secret, self.pages, list_name, email, url, self.hours
            )
            # One confirmation at a time: they are few, and a provider is used by one thread.
            with self.sending, make_provider(self.config.send.provider, self.config) as provider:
                [result] = provider.send_batch([message])
        except (NewsletterError, OSError) as exc:
            log.error("confirmation message not sent: %s", exc)
            return "failed"
        if result.status is not Status.ACCEPTED:
            log.error("confirmation message not sent: %s %s", result.status.value, result.reason)
            return "failed"
        self.events.add([web_event("confirmation_sent", key, list_name)])
        return "sent"

    def _store_request(
        self, list_name: str, email: str, name: str, key: str, request_id: str
    ) -> str:
        """Open a request for a new, pending or unsubscribed address; the row's status.

        A new address gets a `pending` row. An unsubscribed row stays as it is: only the
        confirmation subscribes it again.
        """
        folder = self.config.subscribers_dir
        ident = address_id(self.secret, list_name, key)
        row = self._row(list_name, key)
        if row is None:
            if self.pg is not None:
                self.pg.add_pending(list_name, email, name, ident)
            else:
                subs.add_subscriber(
                    folder, list_name, email, name=name, status="pending", source="web"
                )
            row = self._row(list_name, key)
            if row is None:
                return "gone"  # erased or rewritten by another process meanwhile
        if row.status not in CONFIRMABLE:
            return row.status
        if self._suppressed(key):
            return "suppressed"
        self.requests.open(list_name, ident, request_id, row.status, row.updated_at)
        return row.status

    def check(self, claims: Claims) -> str | None:
        """What a confirmation link can do now: "confirm", "confirmed" (already), or None (void)."""
        found = self._find(claims)
        if found is None:
            return None
        request, row = found
        if request.confirmed:
            return "confirmed" if row.status == "subscribed" else None
        return "confirm" if self._confirmable(claims, request, row) else None

    def confirm(self, claims: Claims) -> bool:
        """Subscribe the address of the request this link was made for; True also when it is."""
        return self.confirm_new(claims)[0]

    def confirm_new(self, claims: Claims) -> tuple[bool, subs.Subscriber | None]:
        """confirm(), and the row when this call is the one that subscribed it (to welcome)."""
        with self.writes:
            found = self._find(claims)
            if found is None:
                return False, None
            request, row = found
            if request.confirmed:
                return row.status == "subscribed", None
            if not self._confirmable(claims, request, row):
                return False, None  # a newer request, an unsubscribe or a bounce since: void
            if self.pg is not None:  # all of it in one transaction, checked again there
                done = self.pg.confirm(
                    claims.list_name, row.key, claims.address_id, request.request_id, row
                )
                return done, replace(row, status="subscribed") if done else None
            try:
                subs.set_status(
                    self.config.subscribers_dir,
                    claims.list_name,
                    row.key,
                    "subscribed",
                    source="web",
                )
            except SubscriberError:
                return False, None  # suppressed meanwhile
            self.requests.confirmed(claims.list_name, claims.address_id, request.request_id)
            # A confirmed opt-in supersedes an earlier unsubscribe kept in the journal.
            optouts.clear(self.config.state_dir, row.key, claims.list_name)
        self.events.add([web_event("confirm", row.key, claims.list_name)])
        return True, replace(row, status="subscribed")

    def send_welcome(self, list_name: str, row: subs.Subscriber) -> None:
        """After the answer has gone: the welcome issue, if the list has one (never raises)."""
        if self.welcome is not None:
            outcome = self.welcome.send(list_name, row)
            log.info("welcome message for list %s: %s", list_name, outcome)

    def _confirmable(self, claims: Claims, request: Request, row: subs.Subscriber) -> bool:
        # The row as readers see it: an unsubscribe since, kept in the journal, voids the link.
        return _unchanged(request, row)

    def _suppressed(self, key: str) -> bool:
        if self.pg is not None:
            return self.pg.suppressed(key)
        reasons = subs.suppression_reasons(self.config.subscribers_dir)
        return subs.suppression_reason(key, reasons) is not None

    def _row(self, list_name: str, key: str) -> subs.Subscriber | None:
        """The row with this key, with the opt-outs the journal keeps for it shown."""
        row = self.directory.row(list_name, key)
        if row is None or self.pg is not None:  # on PostgreSQL the row shows them already
            return row
        seen = optouts.withdrawn(self.config.state_dir, list_name, self.secret)
        moved = seen.change(row.email, row.status) if seen else None
        return replace(row, status=moved[0]) if moved else row

    def _find(self, claims: Claims) -> tuple[Request, subs.Subscriber] | None:
        if claims.request_id is None:
            return None
        request = self.requests.get(claims.list_name, claims.address_id, claims.request_id)
        if request is None:
            return None
        key = self.directory.key_for(claims.list_name, claims.address_id)
        row = self._row(claims.list_name, key) if key else None
        return (request, row) if row is not None else None


def _unchanged(request: Request, row: subs.Subscriber) -> bool:
    return (row.status, row.updated_at) == (request.row_status, request.row_updated)
