"""Mailgun's webhooks: a verified delivery's bounce, complaint or unsubscribe becomes a change."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

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
from newsletter.web.webhooks import Change, Outcome, event_of, in_turn, record_and_apply

if TYPE_CHECKING:
    from newsletter.web.service import Service

log = logging.getLogger("newsletter.webhooks")


def to_event(data: dict) -> Event:
    return event_of(SOURCE, read(data))


def process(service: Service, data: dict) -> Outcome:
    """Record the event and apply what it asks of the lists (see webhooks.record_and_apply)."""
    return record_and_apply(service, "mailgun", [to_event(data)], _changes)


def _changes(event: Event) -> list[Change]:
    found = change(event.event, event.email, event.payload)
    return [(event.email, found[0], None, found[1])] if found else []


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
        outcome = await run_in_threadpool(in_turn, service, process, data)
    except NewsletterError as exc:
        service.mailgun_tokens.release(token)
        log.error("mailgun webhook not processed (Mailgun will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})
