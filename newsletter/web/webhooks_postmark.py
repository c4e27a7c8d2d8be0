"""Postmark's webhooks: an authenticated delivery's event becomes list and suppression changes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter import optouts
from newsletter.errors import NewsletterError
from newsletter.providers.postmark.webhook import SOURCE, WebhookRefused, change, parse, read
from newsletter.web.events import Event
from newsletter.web.webhooks import Outcome

if TYPE_CHECKING:
    from newsletter.web.service import Service

log = logging.getLogger("newsletter.webhooks")


def to_event(raw: dict) -> Event:
    parsed = read(raw)
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


def process(service: Service, raw: dict) -> Outcome:
    """Record the event; when it is new, journal its change, then apply what is pending.

    As for SendGrid's: the change is journaled in the event's transaction, so a failure
    leaves the event unrecorded and Postmark's retry brings it again.
    """
    event = to_event(raw)
    with service.events.recording([event]) as new:
        found = [c for e in new if (c := change(e.event, e.email, e.payload))]
        service.journal.record_actions(
            (event.email, status, None, reason) for status, reason in found
        )
    changed, suppressed = optouts.apply_pending(
        service.config, service.secret, service.journal, service.directory.resolve
    )
    if new:
        log.info("postmark webhook: %s, %d change(s)", event.event, len(found))
    return Outcome(1, len(new), changed, suppressed)


async def receive(service: Service, request: Request) -> Response:
    """POST /webhooks/postmark: 403 unless Postmark's credentials; 500 makes Postmark retry."""
    credentials = service.postmark_webhook
    if credentials is None:
        log.warning("postmark webhook refused: NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD is not set")
        return PlainTextResponse("webhook not configured\n", status_code=503)
    client = request.client.host if request.client else None
    try:
        credentials.verify(request.headers.get("authorization"), client)
    except WebhookRefused as exc:
        log.warning("postmark webhook refused: %s", exc)
        return PlainTextResponse(
            "forbidden\n", status_code=403, headers={"WWW-Authenticate": 'Basic realm="webhooks"'}
        )
    try:
        raw = parse(await request.body())
    except WebhookRefused as exc:
        log.warning("postmark webhook not understood: %s", exc)
        return PlainTextResponse("not a Postmark event\n", status_code=400)
    try:
        outcome = await run_in_threadpool(_process_in_turn, service, raw)
    except NewsletterError as exc:
        log.error("postmark webhook not processed (Postmark will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})


def _process_in_turn(service: Service, raw: dict) -> Outcome:
    with service.writes:
        return process(service, raw)
