"""The subscribe form and the confirmation link's page (double opt-in; the work is in optin)."""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from newsletter import subscribers as subs
from newsletter.errors import NewsletterError
from newsletter.tokens import verify_request_token
from newsletter.web.optin import CONFIRM_PURPOSE
from newsletter.web.service import Service

MAX_NAME = 200
HONEYPOT = "website"  # hidden from people; bots fill it in
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # names go into mail headers

log = logging.getLogger("newsletter.serve")


def form_page(
    service: Service, request: Request, status: int = 200, **context: Any
) -> HTMLResponse:
    chosen = context.pop("list_name", None) or request.query_params.get("list")
    lists = service.lists
    context.setdefault("values", {})
    return service.page(
        request,
        "subscribe",
        status,
        forms=("/subscribe",),
        lists=lists,
        chosen=chosen if chosen in lists else lists[0],
        **context,
    )


async def page(service: Service, request: Request) -> Response:
    return form_page(service, request)


def invalid(service: Service, list_name: str, email: str, name: str) -> str | None:
    """Which field of the form is wrong (list, email or name), or None."""
    if list_name not in service.lists:
        return "list"
    if len(email) > 254 or len(name) > MAX_NAME or CONTROL.search(name):
        return "email" if len(email) > 254 else "name"
    try:
        subs.normalize_email(email)
    except subs.InvalidEmail:
        return "email"
    return None


async def subscribe(service: Service, request: Request) -> Response:
    form = await service.form(request)
    values = {k: v for k in ("email", "name", "list") if isinstance(v := form.get(k), str)}
    email = values.get("email", "").strip()
    name = " ".join(values.get("name", "").split())
    list_name = values.get("list", "") or service.lists[0]
    if not service.csrf_ok(request, form):
        return form_page(service, request, 400, values=values, list_name=list_name, error="expired")
    hours = service.config.serve.confirm_ttl_hours
    if form.get(HONEYPOT):
        return service.page(request, "check-inbox", hours=hours)
    client = request.client.host if request.client else "unknown"
    try:  # off the event loop: on PostgreSQL the count is shared by every instance
        allowed = await run_in_threadpool(service.per_ip.allow, client)
    except NewsletterError as exc:
        log.error("subscribe request not counted: %s", exc)
        return service.message(
            request, 503, "Please try again", "We could not take your request just now."
        )
    if not allowed:
        return service.message(
            request,
            429,
            "Too many requests",
            "There have been too many subscribe requests from your network. "
            "Please try again in an hour.",
        )
    if error := invalid(service, list_name, email, name):
        return form_page(service, request, 400, values=values, list_name=list_name, error=error)
    task = BackgroundTask(handle, service, list_name, email, name, service.base_url(request))
    response = service.page(request, "check-inbox", hours=hours)
    response.background = task
    return response


def handle(service: Service, list_name: str, email: str, name: str, base_url: str) -> None:
    """The request itself, after the answer has gone (so its timing tells nothing)."""
    outcome = service.optin.request(list_name, email, name, base_url)
    log.info("subscribe request for list %s: %s", list_name, outcome)


async def confirm_page(service: Service, request: Request) -> Response:
    """GET: a page with a button; nothing changes (scanners and prefetchers open links)."""
    claims = verify_request_token(service.secret, request.path_params["token"], CONFIRM_PURPOSE)
    state = None if claims is None else await run_in_threadpool(service.optin.check, claims)
    if state is None:
        return service.page(request, "invalid-link", 404, confirm=True)
    if state == "confirmed":
        return service.page(request, "confirmed")
    return service.page(request, "confirm", forms=(request.url.path,))


async def confirm(service: Service, request: Request) -> Response:
    """POST from the confirmation page (CSRF-checked): the address becomes subscribed."""
    form = await service.form(request)
    claims = verify_request_token(service.secret, request.path_params["token"], CONFIRM_PURPOSE)
    if claims is None:
        return service.page(request, "invalid-link", 404, confirm=True)
    if not service.csrf_ok(request, form):
        return service.page(request, "confirm", 400, forms=(request.url.path,), expired_form=True)
    done, new = await run_in_threadpool(service.optin.confirm_new, claims)
    if not done:
        return service.page(request, "invalid-link", 404, confirm=True)
    response = service.page(request, "confirmed")
    if new is not None:  # a welcome never holds up, or fails, the confirmation
        response.background = BackgroundTask(service.optin.send_welcome, claims.list_name, new)
    return response
