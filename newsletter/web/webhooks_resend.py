"""Resend's webhooks: a verified delivery's bounces and complaints become suppressions."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter import subscribers as subs
from newsletter.errors import NewsletterError
from newsletter.providers.resend.webhook import WebhookRefused, verify
from newsletter.web.events import Event
from newsletter.web.webhooks import Action, Change, Outcome, in_turn, record_and_apply

if TYPE_CHECKING:
    from newsletter.web.service import Service

SOURCE = "resend"
TRANSIENT_BOUNCES = frozenset({"transient", "temporary", "undetermined"})

log = logging.getLogger("newsletter.webhooks")


def parse(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise WebhookRefused("body is not a Resend event")
    return data


def to_events(message_id: str, raw: dict) -> list[Event]:
    """One Event per recipient the delivery names; ids from svix-id, the same on every retry."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    to = data.get("to")
    addresses = [to] if isinstance(to, str) else to if isinstance(to, list) else []
    tags = _tags(data.get("tags"))
    occurred_at = None
    if isinstance(raw.get("created_at"), str):
        try:
            when = dt.datetime.fromisoformat(raw["created_at"].replace("Z", "+00:00"))
            occurred_at = when.astimezone(dt.UTC).isoformat(timespec="seconds")
        except ValueError:
            pass
    events = []
    for address in [a for a in addresses if isinstance(a, str) and a.strip()] or [None]:
        email = subs.email_key(address) if address else None
        events.append(
            Event(
                source=SOURCE,
                event_id=f"{message_id}:{email or ''}",
                event=raw["type"][:64],
                email=email,
                list_name=tags.get("list"),
                issue=tags.get("issue"),
                occurred_at=occurred_at,
                payload=raw,
            )
        )
    return events


def _tags(value) -> dict[str, str]:
    # Webhooks carry the tags as an object; accept the send's list of {name, value} too.
    if isinstance(value, list):
        value = {t.get("name"): t.get("value") for t in value if isinstance(t, dict)}
    if not isinstance(value, dict):
        return {}
    return {k: v[:200] for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def action_for(event: Event) -> Action | None:
    """The change an event calls for, or None for events that are only recorded."""
    email, kind = event.email, event.event
    if not email:
        return None
    if kind == "email.bounced":
        bounce = event.payload.get("data", {}).get("bounce") or {}
        if str(bounce.get("type", "")).strip().lower() in TRANSIENT_BOUNCES:
            return None  # Resend retries those; the address may be fine
        return Action(email, "bounced", None, "resend: bounce")
    if kind == "email.complained":
        return Action(email, "complained", None, "resend: complaint")
    if kind == "email.suppressed":
        return Action(email, "bounced", None, "resend: on Resend's suppression list")
    return None


def process(service: Service, events: list[Event]) -> Outcome:
    """Record the events and apply what they ask of the lists (see webhooks.record_and_apply)."""
    return record_and_apply(service, "resend", events, _changes)


def _changes(event: Event) -> list[Change]:
    action = action_for(event)
    if action is None:
        return []
    return [
        (action.email, action.status, name, action.suppress) for name in action.lists or (None,)
    ]


async def receive(service: Service, request: Request) -> Response:
    """POST /webhooks/resend: 403 unless signed and fresh; 500 makes Resend (Svix) retry."""
    secret = service.resend_webhook_secret
    if secret is None:
        log.warning("resend webhook refused: RESEND_WEBHOOK_SECRET is not set")
        return PlainTextResponse("webhook not configured\n", status_code=503)
    body = await request.body()
    try:
        message_id = verify(
            secret, body, request.headers, tolerance=service.config.serve.webhook_max_age_seconds
        )
        events = to_events(message_id, parse(body))
    except WebhookRefused as exc:
        log.warning("resend webhook refused: %s", exc)
        return PlainTextResponse("forbidden\n", status_code=403)
    try:
        outcome = await run_in_threadpool(in_turn, service, process, events)
    except NewsletterError as exc:
        log.error("resend webhook not processed (Resend will retry): %s", exc)
        return PlainTextResponse("not processed\n", status_code=500)
    return JSONResponse({"received": outcome.received, "new": outcome.new})
