"""Unsubscribe (RFC 8058 one-click and the confirmation page) and its undo, resubscribe."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from newsletter import subscribers as subs
from newsletter.errors import NewsletterError, SubscriberError
from newsletter.tokens import PROBE_PURPOSE, Claims, verify_token
from newsletter.web.events import web_event
from newsletter.web.service import Service

Owner = tuple[Claims, str | None]  # a token's claims and the key of its row, if found

ONE_CLICK = ("List-Unsubscribe", "One-Click")

log = logging.getLogger("newsletter.serve")


async def page(service: Service, request: Request) -> Response:
    """GET: a confirmation page; nothing changes (scanners follow every link in a message)."""
    if await service.token_owner(request) is None:
        return service.invalid_link(request)
    return service.page(request, "unsubscribe", forms=(request.url.path,))


async def posted(service: Service, request: Request) -> tuple[FormData, Owner | None]:
    """The form posted to a token's address, and whose the token is."""
    form = await service.form(request)
    return form, await service.token_owner(request)


async def unsubscribe(service: Service, request: Request) -> Response:
    """POST: RFC 8058 one-click (no CSRF token, as mailbox providers send it) or the page's form."""
    token = request.path_params["token"]
    form = await service.form(request)
    one_click = form.get(ONE_CLICK[0]) == ONE_CLICK[1]
    if one_click:
        # Mailbox providers send these in bursts: the token, its row and the record in one
        # hop to a worker thread, not two.
        outcome = await run_in_threadpool(unsubscribe_now, service, token, "one-click")
        found = outcome is not None
    else:
        owner = await service.token_owner(request)
        found = owner is not None
        if found and not service.csrf_ok(request, form):
            return service.page(
                request, "unsubscribe", 400, forms=(request.url.path,), expired_form=True
            )
        if found:
            claims, key = owner
            outcome = await run_in_threadpool(record, service, claims, key, "page")
    if not found:
        if one_click and verify_token(service.secret, token, PROBE_PURPOSE):
            return PlainTextResponse("One-click unsubscribe answers here.\n")  # doctor's probe
        return service.invalid_link(request)
    if not outcome:
        return service.message(
            request,
            503,
            "Please try again",
            "We could not record your request just now. Please try again in a minute.",
        )
    if one_click:
        return service.one_form_page(request, "unsubscribed", f"/resubscribe/{token}")
    return service.page(request, "unsubscribed", forms=(f"/resubscribe/{token}",), token=token)


def unsubscribe_now(service: Service, token: str, via: str) -> bool | None:
    """Find the token's row and record its unsubscribe: None for no such subscriber, else
    whether it was recorded (record())."""
    if service.pg is not None:  # the link looked up in the statement that records it
        claims = verify_token(service.secret, token)
        if claims is None:
            return None
        try:
            if service.pg.unsubscribe_link(claims.list_name, claims.address_id, via):
                return True
        except NewsletterError as exc:
            log.error("unsubscribe not recorded for list %s: %s", claims.list_name, exc)
            return False
    found = service.subscriber_key(token)  # not indexed yet (a new row), or the files store
    if found is None:
        return None
    claims, key = found
    return record(service, claims, key, via)


def record(service: Service, claims: Claims, key: str | None, via: str) -> bool:
    """Keep the unsubscribe in the journal (durably, without the list); False if it could
    not be kept. The list file is not rewritten: every reader honours the journal at once and
    the next command that writes the list folds it in (optouts.fold)."""
    try:
        if service.pg is not None:  # the row, the journal and the event: one transaction
            service.pg.unsubscribe(claims.list_name, claims.address_id, key, via)
            return True
        service.journal.unsubscribe(claims.list_name, claims.address_id, key, via)
    except NewsletterError as exc:
        log.error("unsubscribe not recorded for list %s: %s", claims.list_name, exc)
        return False
    try:
        service.events.add_grouped(web_event("unsubscribe", key, claims.list_name, via=via))
    except NewsletterError as exc:  # the journal has it; the event is for reports
        log.warning("unsubscribe event not recorded: %s", exc)
    return True


async def resubscribe(service: Service, request: Request) -> Response:
    """POST from the unsubscribed page: undo, for rows that are `unsubscribed` only."""
    token = request.path_params["token"]
    form, found = await posted(service, request)
    if found is None:
        return service.invalid_link(request)
    if not service.csrf_ok(request, form):
        return service.page(
            request,
            "unsubscribed",
            400,
            forms=(request.url.path,),
            token=token,
            expired_form=True,
        )
    claims, key = found
    if not await run_in_threadpool(undo, service, claims, key):
        return service.message(
            request,
            409,
            "We cannot subscribe you again from here",
            "Reply to any issue and the editors will sort it out.",
        )
    return service.page(request, "resubscribed", forms=(f"/unsubscribe/{token}",), token=token)


def undo(service: Service, claims: Claims, key: str | None) -> bool:
    """Undo an unsubscribe: its journal entry goes first, then the row changes back.

    An entry never applied left the row as it was: taking it back is all there is to do.
    """
    list_name = claims.list_name
    if service.pg is not None:
        try:
            return service.pg.resubscribe(list_name, claims.address_id, key)
        except NewsletterError as exc:
            log.error("resubscribe not recorded for list %s: %s", list_name, exc)
            return False
    try:
        with service.writes:  # not while the entry is being applied to the list
            entry = service.journal.cancel(list_name, claims.address_id)
    except NewsletterError as exc:
        log.error("resubscribe not recorded for list %s: %s", list_name, exc)
        return False
    untouched = entry is not None and entry.applied_at is None
    key = key or (entry.key if entry else None)
    row = service.directory.row(list_name, key) if key else None
    if row is None or row.status not in ("unsubscribed", "subscribed"):
        done = untouched and (row is None or row.status == "subscribed")
    elif row.status == "subscribed":
        done = True
    else:
        try:
            with service.writes:
                subs.set_status(
                    service.config.subscribers_dir,
                    list_name,
                    key,
                    "subscribed",
                    source="web:resubscribe",
                )
            done = True
        except SubscriberError:
            done = False  # suppressed meanwhile, or the list cannot be written now
    if done:
        service.events.add([web_event("resubscribe", key, list_name)])
    return done
