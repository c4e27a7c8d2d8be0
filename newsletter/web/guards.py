"""What stands between the internet and the lists: CSRF tokens, rate limits, body limits, headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf"

log = logging.getLogger("newsletter.serve")


# --- CSRF: a signed double-submit cookie --------------------------------------------------------


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, cookie: str, action: str) -> str:
    """The hidden form value for one form action, bound to the browser's cookie."""
    mac = hmac.new(secret, f"csrf\0{cookie}\0{action}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


def csrf_ok(secret: bytes, cookie: str | None, action: str, submitted: str | None) -> bool:
    """Whether a POST carries the token its own cookie and action call for (constant-time)."""
    if not cookie or not submitted or len(cookie) > 64:
        return False
    expected = csrf_token(secret, cookie, action)
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace"))


# --- rate limits ---------------------------------------------------------------------------------


class RateLimiter:
    """At most `limit` hits per key within `window` seconds (sliding window, in memory)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def allow(self, key: str) -> bool:
        """Count a hit for key; False (and not counted) once the key is over its limit."""
        if self.limit <= 0:
            return True
        now = self.clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True

    def _sweep(self, now: float) -> None:
        """Forget keys whose hits are all old, so memory does not grow with every address seen."""
        for key in [
            k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window
        ]:
            del self._hits[key]
        self._next_sweep = now + self.window


# --- ASGI middleware ------------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over a size (413), by Content-Length or while they stream in."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if declared_too_big(scope, limit):
            await _plain(send, 413, "Request body too large.\n")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _plain(send, 413, "Request body too large.\n")


def declared_too_big(scope: Scope, limit: int) -> bool:
    """Whether the request's Content-Length (any of them) is over `limit`, or not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return True
            except ValueError:
                return True
    return False


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?")


def host_name(header: str) -> str | None:
    """The name in a Host header (no port, IPv6 without brackets, lower case), or None."""
    match = _HOST.fullmatch(header)
    if not match:
        return None
    return match.group(1).strip("[]").rstrip(".").lower()


class HostCheck:
    """Answer only requests for our own name (421 otherwise), so no link or page is ever built
    for a name an attacker put in the Host header."""

    def __init__(
        self, app: ASGIApp, allowed: Callable[[str], bool], exempt: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.allowed = allowed
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.exempt:
            refused = host_refusal(scope, self.allowed)
            if refused is not None:
                await _plain(send, *refused)
                return
        await self.app(scope, receive, send)


def host_refusal(scope: Scope, allowed: Callable[[str], bool]) -> tuple[int, str] | None:
    """HostCheck's answer (status, text) to a request for a name not ours; None: ours."""
    header = next((v for n, v in scope["headers"] if n == b"host"), b"")
    name = host_name(header.decode("latin-1"))
    if name is None:
        return 400, "Bad request: no valid Host header.\n"
    if not allowed(name):
        return 421, "Misdirected request: this service answers for its own address only.\n"
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE_CSP = PAGE_CSP.encode()
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # Unsubscribe and confirmation URLs are capabilities: never send them on as a Referer.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
# Tokens in paths are capabilities; the access log shows which route, not which token.
_TOKEN_PATH = re.compile(r"^/(unsubscribe|resubscribe|confirm|c|o)/[^/?]+")


def redact(path: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/…", path)


class Hardening:
    """Security headers on every response, and an access log line without tokens or addresses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": secured(message.get("headers", []))}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            log_request(scope, status, started)


def secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A response's headers with the security headers it does not set itself (Hardening's)."""
    present = {name.lower() for name, _ in headers}
    extra = [(n, v) for n, v in _SECURITY_HEADERS if n not in present]
    if b"content-security-policy" not in present:
        extra.append((b"content-security-policy", _PAGE_CSP))
    return [*headers, *extra]


def log_request(scope: Scope, status: int, started: float) -> None:
    """Hardening's access log line: method, path without its token, status, time taken."""
    log.info(
        "%s %s %d %.0f ms",
        scope.get("method", "-"),
        redact(scope.get("path", "")),
        status,
        (time.perf_counter() - started) * 1000,
    )
