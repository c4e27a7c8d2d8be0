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
from newsletter.web.service import NO_STORE, Service

Owner = tuple[Claims, str | None]  # a token's claims and the key of its row, if found

ONE_CLICK = ("List-Unsubscribe", "One-Click")
ONE_CLICK_DONE = "You are unsubscribed.\n"

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
    """POST: RFC 8058 one-click (no CSRF token, as mailbox providers send it) or the page's form.
    (One-click POSTs with RFC 8058's exact body are answered by web.oneclick before routing,
    with one_click_answer(); this handles the other shapes of them too.)"""
    token = request.path_params["token"]
    form = await service.form(request)
    if form.get(ONE_CLICK[0]) == ONE_CLICK[1]:
        # Mailbox providers send these in bursts: the token, its row and the record in one
        # hop to a worker thread, not two.
        outcome = await run_in_threadpool(unsubscribe_now, service, token, "one-click")
        return one_click_answer(service, request, token, outcome)
    owner = await service.token_owner(request)
    if owner is None:
        return service.invalid_link(request)
    if not service.csrf_ok(request, form):
        return service.page(
            request, "unsubscribe", 400, forms=(request.url.path,), expired_form=True
        )
    claims, key = owner
    if not await run_in_threadpool(record, service, claims, key, "page"):
        return not_recorded(service, request)
    return service.page(request, "unsubscribed", forms=(f"/resubscribe/{token}",), token=token)


def one_click_answer(
    service: Service, request: Request, token: str, outcome: bool | None
) -> Response:
    """The answer to a one-click unsubscribe whose unsubscribe_now() gave `outcome`. Done, it
    is a short text: the mailbox provider that posts it reads no page, so there is no form
    (and no CSRF cookie) to send it, and a burst of hundreds costs a few bytes each."""
    if outcome is None:
        if verify_token(service.secret, token, PROBE_PURPOSE):
            return PlainTextResponse("One-click unsubscribe answers here.\n")  # doctor's probe
        return service.invalid_link(request)
    if not outcome:
        return not_recorded(service, request)
    return PlainTextResponse(ONE_CLICK_DONE, headers=NO_STORE)


def not_recorded(service: Service, request: Request) -> Response:
    return service.message(
        request,
        503,
        "Please try again",
        "We could not record your request just now. Please try again in a minute.",
    )


def unsubscribe_now(service: Service, token: str, via: str) -> bool | None:
    """Find the token's row and record its unsubscribe: None for no such subscriber, else
    whether it was recorded (record())."""
    return unsubscribe_many(service, [token], via)[0]


def unsubscribe_many(service: Service, tokens: list[str], via: str) -> list[bool | None]:
    """unsubscribe_now() of several tokens, recorded together (one commit of the journal, or
    one statement on PostgreSQL): each token's outcome, in order."""
    outcomes: list[bool | None] = [None] * len(tokens)
    rest = range(len(tokens))
    if service.pg is not None:  # the links looked up in the statement that records them
        claims = {i: verify_token(service.secret, tokens[i]) for i in rest}
        rest = [i for i in rest if claims[i] is not None]
        links = [(claims[i].list_name, claims[i].address_id) for i in rest]
        try:
            kept = service.pg.unsubscribe_links(links, via) if links else []
        except NewsletterError as exc:
            _not_recorded({name for name, _ in links}, exc)
            for i in rest:
                outcomes[i] = False
            return outcomes
        for i, done in zip(rest, kept, strict=True):
            outcomes[i] = True if done else None
        rest = [i for i in rest if outcomes[i] is None]
    # Rows not indexed yet (new ones), or the files store: the link's row from the directory.
    found = {}
    for i in rest:
        try:
            found[i] = service.subscriber_key(tokens[i])
        except NewsletterError as exc:  # PostgreSQL could not be read: answered as not kept
            log.error("unsubscribe not recorded: %s", exc)
            outcomes[i] = False
    owners = [i for i in found if found[i] is not None]
    recorded = record_many(service, [found[i] for i in owners], via)
    for i, done in zip(owners, recorded, strict=True):
        outcomes[i] = done
    return outcomes


def record(service: Service, claims: Claims, key: str | None, via: str) -> bool:
    """Keep the unsubscribe in the journal (durably, without the list); False if it could
    not be kept. The list file is not rewritten: every reader honours the journal at once and
    the next command that writes the list folds it in (optouts.fold)."""
    return record_many(service, [(claims, key)], via)[0]


def record_many(service: Service, owners: list[Owner], via: str) -> list[bool]:
    """record() of several (claims, key), kept together: whether each was kept."""
    if not owners:
        return []
    entries = [(claims.list_name, claims.address_id, key) for claims, key in owners]
    try:
        if service.pg is not None:  # the rows, the journal and the events: one transaction
            service.pg.unsubscribe_many(entries, via)
            return [True] * len(owners)
        service.journal.unsubscribe_many(entries, via)
    except NewsletterError as exc:
        _not_recorded({name for name, _, _ in entries}, exc)
        return [False] * len(owners)
    try:
        service.events.add_grouped_many(
            [web_event("unsubscribe", key, claims.list_name, via=via) for claims, key in owners]
        )
    except NewsletterError as exc:  # the journal has them; the events are for reports
        log.warning("unsubscribe event not recorded: %s", exc)
    return [True] * len(owners)


def _not_recorded(list_names: set[str], exc: NewsletterError) -> None:
    for name in sorted(list_names):
        log.error("unsubscribe not recorded for list %s: %s", name, exc)


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
