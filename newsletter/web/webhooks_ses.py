"""SES events via SNS: a verified notification becomes list and suppression changes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter.errors import NewsletterError
from newsletter.providers.ses import webhook
from newsletter.web.events import Event
from newsletter.web.webhooks import Change, Outcome, event_of, in_turn, record_and_apply

if TYPE_CHECKING:
    from newsletter.web.service import Service

log = logging.getLogger("newsletter.webhooks")


def process(service: Service, message: dict) -> Outcome:
    """Record the events; journal the changes of new ones in the same transaction, then apply."""
    events = [event_of(webhook.SOURCE, parsed) for parsed in webhook.read(message)]
    return record_and_apply(service, "ses", events, _changes)


def _changes(event: Event) -> list[Change]:
    found = webhook.change(event.event, event.email)
    return [(event.email, found[0], None, found[1])] if found else []


async def receive(service: Service, request: Request) -> Response:
    """POST /webhooks/ses: 403 unless SNS signed it for one of our topics; 500 makes SNS retry."""
    config = service.config
    if not config.ses.sns_topic_arns:
        log.warning("ses notification refused: [ses] sns_topic_arns is not set")
        return PlainTextResponse("webhook not configured\n", status_code=503)
    try:
        message = webhook.parse(await request.body())
    except webhook.WebhookRefused as exc:
        log.warning("ses notification not understood: %s", exc)
        return PlainTextResponse("not an SNS message\n", status_code=400)
    try:
        await run_in_threadpool(webhook.verify, config, message)
    except webhook.WebhookRefused as exc:
        log.warning("ses notification refused: %s", exc)
        return PlainTextResponse("forbidden\n", status_code=403)
    if message["Type"] == "SubscriptionConfirmation":
        try:
            await run_in_threadpool(webhook.confirm, config, message)
        except webhook.WebhookRefused as exc:
            log.warning("ses subscription not confirmed: %s", exc)
            return PlainTextResponse("not confirmed\n", status_code=502)
        log.info("ses: subscribed to %s", message.get("TopicArn"))
        return JSONResponse({"confirmed": message.get("TopicArn")})
    if message["Type"] == "UnsubscribeConfirmation":
        return JSONResponse({"received": 0, "new": 0})
    try:
        outcome = await run_in_threadpool(in_turn, service, process, message)
    except NewsletterError as exc:
        log.error("ses notification not processed (SNS will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})
