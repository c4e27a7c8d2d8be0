"""GET /c/<token> (a tracked click: recorded, then 302 to the link) and GET /o/<token> (the open
pixel: recorded, then a 1x1 GIF). See newsletter.tracking.

A token is signed and names its destination, so no lookup is needed to answer; the
destination must also be a link of the token's issue as it was sent (its links file, or the
store's issue_links on PostgreSQL), so even a token signed with a leaked secret cannot send a
reader anywhere else. Recording never holds up the answer's content: a store that cannot be
written loses the event, not the reader.
"""

from __future__ import annotations

import base64
import logging
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.errors import NewsletterError
from newsletter.tracking import tokens
from newsletter.tracking.links import read_links
from newsletter.web.events import Event, now_iso
from newsletter.web.service import NO_STORE, Service

SOURCE = "tracking"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

log = logging.getLogger("newsletter.serve")


def _record(service: Service, tracked: tokens.Tracked, request: Request) -> None:
    key = service.directory.key_for(tracked.list_name, tracked.address_id)
    payload = {
        "recipient": tracked.address_id,
        "user_agent": request.headers.get("user-agent", "")[:300],
    }
    if tracked.url:
        payload["url"] = tracked.url
    event = Event(
        source=SOURCE,
        event_id=secrets.token_hex(12),
        event="click" if tracked.kind == tokens.CLICK else "open",
        email=key,
        list_name=tracked.list_name,
        issue=tracked.issue,
        occurred_at=now_iso(),
        payload=payload,
    )
    try:
        service.events.add([event])
    except NewsletterError as exc:
        log.warning("tracking event not recorded: %s", exc)


def _issue_has(service: Service, issue: str, url: str) -> bool:
    if "/" in issue or issue.startswith("."):
        return False
    if service.pg is not None:  # the links a send kept in the store, whoever sent it
        from newsletter.tracking import pglinks

        return service.pg.db.run(
            lambda conn: pglinks.has(conn, issue, url), "cannot read the issue's links"
        )
    return any(link.url == url for link in read_links(service.config.state_dir, issue))


async def click(service: Service, request: Request) -> Response:
    tracked = tokens.verify(service.secret, request.path_params["token"], tokens.CLICK)
    if tracked is None or not await run_in_threadpool(
        _issue_has, service, tracked.issue, tracked.url
    ):
        return service.invalid_link(request)
    await run_in_threadpool(_record, service, tracked, request)
    return RedirectResponse(tracked.url, status_code=302, headers=NO_STORE)


async def open_pixel(service: Service, request: Request) -> Response:
    tracked = tokens.verify(service.secret, request.path_params["token"], tokens.OPEN)
    if tracked is not None:
        await run_in_threadpool(_record, service, tracked, request)
    # The same image for any token: a mail client shows nothing broken either way.
    return Response(GIF, media_type="image/gif", headers=NO_STORE)
