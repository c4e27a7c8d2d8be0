"""RFC 8058 one-click unsubscribes, answered in front of the Starlette application.

Mailbox providers send `POST /unsubscribe/<token>` with the fixed body
`List-Unsubscribe=One-Click` in bursts of hundreds, and each one's answer waits for the
others' CPU: Starlette's middleware and exception layers, its route table, its Request and form
handling and a thread hop per request cost several times the unsubscribe itself. A request of
exactly that shape, for our own Host and within the body limit (guards.host_refusal and
guards.declared_too_big, the checks guards.HostCheck and guards.BodyLimit make), is recorded
here with unsubscribe.unsubscribe_many (the recording the route uses; those arriving together
go to the worker thread in one hop and one commit) and answered with
unsubscribe.one_click_answer (the route's answer), given guards.secured's headers and
guards.log_request's log line as guards.Hardening gives every response. Every other request,
refused ones included, goes to the application untouched (any body read here given back to
it), whose guards answer it as before.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.web import guards, unsubscribe
from newsletter.web.service import ONE_CLICK_BODY, Service

# Starlette's `/unsubscribe/{token}`: a token is one path segment.
_PATH = re.compile(r"/unsubscribe/([^/]+)")
VIA = "one-click"


class OneClick:
    def __init__(
        self,
        app: ASGIApp,
        service: Service,
        allowed: Callable[[str], bool],
        limit_for: Callable[[str], int],
    ) -> None:
        self.app = app
        self.service = service
        self.allowed = allowed
        self.limit_for = limit_for
        self.state = getattr(app, "state", None)  # the application's, for whoever asks
        self._lock = threading.Lock()
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._draining = False  # a worker thread is keeping batches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if _posted(scope) else None
        if match is None or not self._admitted(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
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
        status = 500
        request = Request(scope)  # the answer's cookie and scheme, as the route sees them
        try:
            token = match.group(1)
            outcome = await self._submit(token)
            response = unsubscribe.one_click_answer(self.service, request, token, outcome)
            status = response.status_code
            await _answer(send, response)
        except Exception as exc:
            if status == 500:  # nothing sent: the application's error page, as it would
                await _answer(send, await self.service.server_error(request, exc))
            raise
        finally:
            guards.log_request(scope, status, started)

    def _admitted(self, scope: Scope) -> bool:
        """Whether guards.HostCheck and guards.BodyLimit would let the request through (those
        they refuse go on to the application, whose guards refuse them)."""
        return guards.host_refusal(scope, self.allowed) is None and not guards.declared_too_big(
            scope, self.limit_for(scope["path"])
        )

    def _submit(self, token: str) -> asyncio.Future:
        """unsubscribe_now(token)'s outcome to come, kept in one worker-thread hop with the
        others arriving meanwhile."""
        loop = asyncio.get_running_loop()
        outcome = loop.create_future()
        with self._lock:
            self._waiting.append((token, outcome))
            if self._draining:  # the worker takes it with its next batch
                return outcome
            self._draining = True
        loop.run_in_executor(None, self._drain, loop)
        return outcome

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a worker thread: keep what is waiting, batch after batch, until nothing is. Each
        batch is answered as soon as it is durable, and the next is taken at once, not when the
        loop (busy reading the rest of a burst) gets round to it."""
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._draining = False
                    return
            tokens = [token for token, _ in batch]
            try:
                outcomes = unsubscribe.unsubscribe_many(self.service, tokens, VIA)
            except Exception as exc:  # each request of the batch hears of it (a 500)
                outcomes = [exc] * len(batch)
            try:
                loop.call_soon_threadsafe(_settle, batch, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting for an answer
                with self._lock:
                    self._waiting, self._draining = [], False
                return


def _settle(batch: list[tuple[str, asyncio.Future]], outcomes: list) -> None:
    """In the loop: each request of a kept batch gets its outcome."""
    for (_, waiter), done in zip(batch, outcomes, strict=True):
        if waiter.done():  # its client went
            continue
        if isinstance(done, BaseException):
            waiter.set_exception(done)
        else:
            waiter.set_result(done)


async def _answer(send: Send, response: Response) -> None:
    headers = guards.secured(response.raw_headers)
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _posted(scope: Scope) -> bool:
    """An HTTP POST whose path Starlette's router matches as it is (no root_path mounted)."""
    return scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path")


def _replay(read: list[Message], receive: Receive) -> Callable:
    """`receive` for the application: the messages already read here, then the rest."""
    pending = list(read)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
