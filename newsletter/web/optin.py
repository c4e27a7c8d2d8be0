"""Double opt-in: a subscribe request stores the address as `pending` and mails it a signed,
expiring link; following the link makes it `subscribed`.

Requests are handled after the response has gone out, so the answer (and its timing) is the
same whether the address was new, pending, already subscribed or suppressed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import optouts
from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.errors import NewsletterError, SubscriberError
from newsletter.events import EventStore, web_event
from newsletter.issue import Issue
from newsletter.message import Campaign, OutgoingMessage
from newsletter.providers import Status, make_provider
from newsletter.render import Rendered
from newsletter.tokens import Claims, make_expiring_token
from newsletter.web.directory import Directory
from newsletter.web.guards import RateLimiter
from newsletter.web.pages import Pages

CONFIRM_PURPOSE = "c"
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
    issue = Issue(
        path=Path(CONFIRMATIONS_SLUG),
        slug=CONFIRMATIONS_SLUG,
        title=subject,
        subject=subject,
        preheader=None,
        date=None,
        template=None,
        list=list_name,
        body="",
        body_line=1,
    )
    rendered = Rendered(
        issue=issue,
        subject=subject,
        preheader=None,
        html=pages.render("confirm-email", **context),
        text=pages.render_text("confirm-email", **context),
        mjml="",
        merge_fields=[],
        context={},
    )
    campaign = Campaign(config, rendered, list_name, secret)
    return campaign.message(email, subs.email_key(email), {}, "")


@dataclass
class OptIn:
    config: Config
    secret: bytes
    pages: Pages
    directory: Directory
    events: EventStore
    per_address: RateLimiter
    writes: threading.Lock  # shared with the other list writers of this process
    sending: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hours(self) -> int:
        return self.config.serve.confirm_ttl_hours

    def request(self, list_name: str, email: str, name: str, base_url: str) -> str:
        """Handle one subscribe request; the outcome is for logs and tests, never for the page."""
        key = subs.email_key(email)
        if not self.per_address.allow(key):
            return "rate-limited"
        try:
            with self.writes:
                stored = self._store_pending(list_name, email, name, key)
        except SubscriberError as exc:  # suppressed, or the list cannot be written
            log.info("subscribe request not taken: %s", type(exc).__name__)
            return "refused"
        if stored != "pending":
            return f"skipped ({stored})"
        expires = int(time.time()) + self.hours * 3600
        token = make_expiring_token(self.secret, list_name, key, CONFIRM_PURPOSE, expires)
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

    def _store_pending(self, list_name: str, email: str, name: str, key: str) -> str:
        """Make the address `pending` unless it is subscribed, bounced or complained; its status."""
        folder = self.config.subscribers_dir
        row = self.directory.row(list_name, key)
        if row is None:
            subs.add_subscriber(folder, list_name, email, name=name, status="pending", source="web")
            return "pending"
        if row.status == "unsubscribed":
            # Someone asks to come back: they stay unmailed until they confirm.
            subs.set_status(folder, list_name, key, "pending", source="web")
            return "pending"
        return row.status

    def confirm(self, claims: Claims) -> bool:
        """Make a pending address subscribed; True also when it already is."""
        key = self.directory.key_for(claims.list_name, claims.address_id)
        if key is None:
            return False
        row = self.directory.row(claims.list_name, key)
        if row is None:
            return False
        if row.status == "subscribed":
            return True
        if row.status != "pending":
            return False  # unsubscribed since, bounced or complained: the old link is void
        state_dir = self.config.state_dir
        if optouts.unsubscribe_pending(state_dir, claims.list_name, claims.address_id):
            return False  # unsubscribed since, and the list row does not show it yet
        try:
            with self.writes:
                subs.set_status(
                    self.config.subscribers_dir, claims.list_name, key, "subscribed", source="web"
                )
        except SubscriberError:
            return False  # suppressed meanwhile
        optouts.clear(state_dir, key, claims.list_name)  # a confirmed opt-in supersedes it
        self.events.add([web_event("confirm", key, claims.list_name)])
        return True
