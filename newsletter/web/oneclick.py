"""RFC 8058 one-click unsubscribes, answered before Starlette's routing.

Mailbox providers send `POST /unsubscribe/<token>` with the fixed body
`List-Unsubscribe=One-Click` in bursts of hundreds, and each one's answer waits for the
others' CPU: Starlette's exception layer, its route table, its Request and form handling and a
thread hop per request cost more than the unsubscribe itself. This is the innermost of serve's
middlewares, so every request has already passed the same guards (guards.Hardening's headers
and log line, guards.HostCheck, guards.BodyLimit) before it gets here. A request of exactly that
shape is recorded with unsubscribe.unsubscribe_now (the recording the route uses; several
arriving together go to the worker thread in one hop) and answered with
unsubscribe.one_click_answer (the route's answer); every other request goes on to the
application untouched, with any body read here given back to it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.web import unsubscribe
from newsletter.web.service import ONE_CLICK_BODY, Service

# Starlette's `/unsubscribe/{token}`: a token is one path segment.
_PATH = re.compile(r"/unsubscribe/([^/]+)")
VIA = "one-click"


class OneClick:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._busy = False  # a task is recording batches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if _candidate(scope) else None
        if match is None:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        body, more = b"", True
        while more and len(body) <= len(ONE_CLICK_BODY):
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if more or body != ONE_CLICK_BODY:
            await self.app(scope, _replay(read, receive), send)
            return
        token = match.group(1)
        outcome = await self.record(token)
        request = Request(scope)  # the answer's cookie and scheme, as the route sees them
        response = unsubscribe.one_click_answer(self.service, request, token, outcome)
        await response(scope, receive, send)

    async def record(self, token: str) -> bool | None:
        """unsubscribe_now(token), in one worker-thread hop with the others arriving meanwhile."""
        outcome = asyncio.get_running_loop().create_future()
        self._waiting.append((token, outcome))
        if not self._busy:
            self._busy = True
            asyncio.create_task(self._drain())
        return await outcome

    async def _drain(self) -> None:
        """Record what is waiting, batch after batch, until nothing is: those arriving while
        one batch is being kept go in the next (each is answered once its own is durable)."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    outcomes = await run_in_threadpool(
                        unsubscribe.unsubscribe_many, self.service, [t for t, _ in batch], VIA
                    )
                except BaseException as exc:  # each request of the batch hears of it
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    raise
                for (_, waiter), done in zip(batch, outcomes, strict=True):
                    if not waiter.done():  # its client may have gone
                        waiter.set_result(done)
        finally:
            self._busy = False


def _candidate(scope: Scope) -> bool:
    """A POST that Starlette's router would match on the path alone (no root_path mounted)."""
    return scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path")


def _replay(read: list[Message], receive: Receive) -> Callable:
    """`receive` for the application: the messages already read here, then the rest."""
    pending = list(read)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
