"""Mailgun's webhooks: a verified delivery's bounce, complaint or unsubscribe becomes a change."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter import optouts
from newsletter.errors import NewsletterError
from newsletter.providers.mailgun.webhook import (
    KEY_ENV,
    SOURCE,
    WebhookRefused,
    change,
    parse,
    read,
    verify,
)
from newsletter.web.events import Event
from newsletter.web.webhooks import Outcome

if TYPE_CHECKING:
    from newsletter.web.service import Service

log = logging.getLogger("newsletter.webhooks")


def to_event(data: dict) -> Event:
    parsed = read(data)
    return Event(
        source=SOURCE,
        event_id=parsed.event_id,
        event=parsed.event,
        email=parsed.email,
        list_name=parsed.list_name,
        issue=parsed.issue,
        occurred_at=parsed.occurred_at,
        payload=parsed.payload,
    )


def process(service: Service, data: dict) -> Outcome:
    """Record the event; when it is new, journal its change, then apply what is pending.

    As for the other providers: the change is journaled in the event's transaction, so a
    failure leaves the event unrecorded and Mailgun's retry brings it again.
    """
    event = to_event(data)
    with service.events.recording([event]) as new:
        found = [c for e in new if (c := change(e.event, e.email, e.payload))]
        service.journal.record_actions(
            (event.email, status, None, reason) for status, reason in found
        )
    changed, suppressed = optouts.apply_pending(
        service.config, service.secret, service.journal, service.directory.resolve
    )
    if new:
        log.info("mailgun webhook: %s, %d change(s)", event.event, len(found))
    return Outcome(1, len(new), changed, suppressed)


async def receive(service: Service, request: Request) -> Response:
    """POST /webhooks/mailgun: 403 unless signed, fresh and new; 500 makes Mailgun retry."""
    key = service.mailgun_webhook_key
    if key is None:
        log.warning("mailgun webhook refused: %s is not set", KEY_ENV)
        return PlainTextResponse("webhook not configured\n", status_code=503)
    try:
        data = parse(await request.body())
        token = verify(
            key,
            data,
            service.mailgun_tokens,
            tolerance=service.config.serve.webhook_max_age_seconds,
        )
    except WebhookRefused as exc:
        log.warning("mailgun webhook refused: %s", exc)
        return PlainTextResponse("forbidden\n", status_code=403)
    try:
        outcome = await run_in_threadpool(_in_turn, service, data)
    except NewsletterError as exc:
        service.mailgun_tokens.release(token)
        log.error("mailgun webhook not processed (Mailgun will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})


def _in_turn(service: Service, data: dict) -> Outcome:
    with service.writes:
        return process(service, data)
