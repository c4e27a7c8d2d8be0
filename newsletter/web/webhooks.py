"""SendGrid's Event Webhook: a verified delivery's events become list and suppression changes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter import optouts
from newsletter import subscribers as subs
from newsletter.errors import NewsletterError
from newsletter.providers.sendgrid.webhook import WebhookRefused, verify
from newsletter.web.events import Event

if TYPE_CHECKING:
    from newsletter.web.service import Service

SOURCE = "sendgrid"
# `dropped` events whose reason means the address itself cannot receive mail.
BOUNCE_DROP_REASONS = frozenset({"bounced address", "invalid"})

log = logging.getLogger("newsletter.webhooks")


def parse_events(body: bytes) -> list[dict]:
    """The JSON array of events; WebhookRefused for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("body is not JSON") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise WebhookRefused("body is not a JSON array of events")
    return data


def to_event(raw: dict) -> Event:
    """One SendGrid event as stored; events without sg_event_id get an id from their content."""
    event_id = raw.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id:
        canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()
        event_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
    email = raw.get("email")
    email = subs.email_key(email) if isinstance(email, str) and email.strip() else None
    occurred = raw.get("timestamp")
    occurred_at = None
    if isinstance(occurred, int | float) and 0 < occurred < 1e11:
        occurred_at = dt.datetime.fromtimestamp(occurred, dt.UTC).isoformat(timespec="seconds")
    return Event(
        source=SOURCE,
        event_id=event_id,
        event=str(raw.get("event") or "unknown")[:64],
        email=email,
        list_name=_text(raw.get("list")),
        issue=_text(raw.get("issue")),
        occurred_at=occurred_at,
        payload=raw,
    )


def _text(value) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Action:
    """What one event does to an address: its new status, where, and whether it is suppressed."""

    email: str
    status: str  # unsubscribed, bounced or complained (only ever moves away from "subscribed")
    lists: tuple[str, ...] | None  # None: every list
    suppress: str | None  # suppression reason, or None to change the lists only


def action_for(event: Event, asm_group_id: int | None = None) -> Action | None:
    """The change an event calls for, or None for events that are only recorded."""
    raw, email = event.payload, event.email
    if not email:
        return None
    kind = event.event
    if kind == "bounce":
        if str(raw.get("type", "bounce")).lower() == "blocked":
            return None  # a block is temporary: SendGrid retries, the address may be fine
        return Action(email, "bounced", None, "sendgrid: bounce")
    if kind == "dropped":
        reason = str(raw.get("reason", "")).strip().lower()
        if reason in BOUNCE_DROP_REASONS:
            return Action(email, "bounced", None, f"sendgrid: dropped ({raw.get('reason')})")
        return None
    if kind == "spamreport":
        return Action(email, "complained", None, "sendgrid: spam report")
    if kind == "unsubscribe":
        return Action(email, "unsubscribed", None, "sendgrid: unsubscribe")
    if kind == "group_unsubscribe":
        if event.list_name:
            return Action(email, "unsubscribed", (event.list_name,), None)
        group = raw.get("asm_group_id")
        if asm_group_id is not None and group is not None and str(group) != str(asm_group_id):
            return None  # another group of the same SendGrid account: not this newsletter
        return Action(email, "unsubscribed", None, None)
    return None


@dataclass(frozen=True)
class Outcome:
    received: int
    new: int
    suppressed: int  # addresses added to the suppression file


def changes_of(asm_group_id: int | None) -> Callable[[Event], list[Change]]:
    """What each SendGrid event asks of the lists (see action_for), as journal changes."""

    def changes(event: Event) -> list[Change]:
        action = action_for(event, asm_group_id)
        if action is None:
            return []
        lists = action.lists or (None,)
        return [(action.email, action.status, name, action.suppress) for name in lists]

    return changes


# What a provider's event asks of the lists: (email, status, list or None for every list,
# suppression reason or None), as the opt-out journal keeps it.
Change = tuple[str, str, str | None, str | None]


def event_of(source: str, parsed) -> Event:
    """The stored Event of a provider event read by its webhook module's `read` (any object
    with event_id, event, email, list_name, issue, occurred_at and payload)."""
    return Event(
        source=source,
        event_id=parsed.event_id,
        event=parsed.event,
        email=parsed.email,
        list_name=parsed.list_name,
        issue=parsed.issue,
        occurred_at=parsed.occurred_at,
        payload=parsed.payload,
    )


def record_and_apply(
    service: Service, source: str, events: list[Event], changes: Callable[[Event], Iterable[Change]]
) -> Outcome:
    """Record the events and what the new ones ask of the lists, together.

    Files store: the changes are journaled in the events' transaction (so a failure leaves
    them unrecorded and the provider's retry brings them again); then the suppressions the
    journal holds go to the suppression file. The lists are never rewritten here: sends,
    count, list and export honour the journal at once, and the next command that writes a
    list folds it in (optouts.fold). A malformed suppression file keeps them pending; sends
    honour them meanwhile.
    PostgreSQL: events, rows and suppressions change in one transaction (PgLists.record).
    """
    if service.pg is not None:
        new, found, suppressed = service.pg.record(events, changes)
    else:
        with service.events.recording(events) as fresh:
            changed = [change for event in fresh for change in changes(event)]
            service.journal.record_actions(changed)
        new, found = len(fresh), len(changed)
        suppressed = optouts.suppress_pending(service.config, service.journal)
    if new:
        log.info("%s webhook: %d event(s), %d new, %d change(s)", source, len(events), new, found)
    return Outcome(len(events), new, suppressed)


def in_turn(service: Service, process: Callable[..., Outcome], *args) -> Outcome:
    """Run `process` with this process's list writers taking turns (see Service.writes);
    on PostgreSQL the database orders them."""
    if service.pg is not None:
        return process(service, *args)
    with service.writes:
        return process(service, *args)


async def receive(service: Service, request: Request) -> Response:
    """POST /webhooks/sendgrid: 403 unless signed and fresh; 500 makes SendGrid retry."""
    if service.webhook_key is None:
        log.warning("sendgrid webhook refused: [serve] webhook_public_key is not set")
        return PlainTextResponse("webhook not configured\n", status_code=503)
    body = await request.body()
    try:
        verify(
            service.webhook_key,
            body,
            request.headers,
            tolerance=service.config.serve.webhook_max_age_seconds,
        )
        events = parse_events(body)
    except WebhookRefused as exc:
        log.warning("sendgrid webhook refused: %s", exc)
        return PlainTextResponse("forbidden\n", status_code=403)
    try:
        outcome = await run_in_threadpool(_process_in_turn, service, events)
    except NewsletterError as exc:
        log.error("sendgrid webhook not processed (SendGrid will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})


def _process_in_turn(service: Service, events: list[dict]) -> Outcome:
    changes = changes_of(service.config.sendgrid.asm_group_id)
    stored = [to_event(raw) for raw in events]
    return in_turn(service, record_and_apply, SOURCE, stored, changes)
