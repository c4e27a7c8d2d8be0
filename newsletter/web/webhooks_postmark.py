"""Postmark's webhooks: an authenticated delivery's event becomes list and suppression changes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter.errors import NewsletterError
from newsletter.providers.postmark.webhook import SOURCE, WebhookRefused, change, parse, read
from newsletter.web.events import Event
from newsletter.web.webhooks import Change, Outcome, event_of, in_turn, record_and_apply

if TYPE_CHECKING:
    from newsletter.web.service import Service

log = logging.getLogger("newsletter.webhooks")


def to_event(raw: dict) -> Event:
    return event_of(SOURCE, read(raw))


def process(service: Service, raw: dict) -> Outcome:
    """Record the event and apply what it asks of the lists (see webhooks.record_and_apply)."""
    return record_and_apply(service, "postmark", [to_event(raw)], _changes)


def _changes(event: Event) -> list[Change]:
    found = change(event.event, event.email, event.payload)
    return [(event.email, found[0], None, found[1])] if found else []


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
        outcome = await run_in_threadpool(in_turn, service, process, raw)
    except NewsletterError as exc:
        log.error("postmark webhook not processed (Postmark will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})
