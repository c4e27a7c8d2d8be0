"""The one place Postmark's API is spoken to: token, host, the postmarker client, its answers."""

# postmarker, not the official postmark-python SDK: the SDK (0.4, beta) is async with a sync
# wrapper that runs every call on one shared background event loop, retries timeouts and
# 5xx on its own (a batch whose answer was lost would go out again), reports a refused
# connection and a lost answer as the same exception, validates every message with pydantic
# and pins tenacity<9 and httpx<0.29. postmarker is a small synchronous client on requests
# that does none of that (max_retries=0) and takes the API root as `root_api_url`.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import requests
from postmarker.core import PostmarkClient
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from newsletter.config import SECRET_KEYS, Config
from newsletter.errors import ConfigError
from newsletter.providers.common import api_base, env_secret, seconds_from

TOKEN_ENV = SECRET_KEYS[("postmark", "server_token")]
TEST_TOKEN = "POSTMARK_API_TEST"  # Postmark validates requests with it and delivers nothing
MAX_MESSAGES = 500  # per /email/batch request
MAX_REQUEST_BYTES = 50_000_000  # 50 MB per request, read as the smaller of 10^6 and 2^20
DEFAULT_429_RETRY_AFTER = 1.0

# Per-message and per-request ErrorCodes (postmarkapp.com/developer/api/overview#error-codes).
INACTIVE_RECIPIENT = 406  # Postmark suppresses the address (hard bounce, complaint, manual)
THROTTLED = 429
MAINTENANCE = 100
# The account or sender cannot send at all: every further message would meet the same.
ACCOUNT_CODES = {
    10: f"Postmark refused the server token: check {TOKEN_ENV}",
    400: "from_email is not a Sender Signature on this Postmark server",
    401: "from_email's Sender Signature is not confirmed in Postmark",
    405: "the Postmark account may not send (out of credits?)",
    412: "the Postmark account is pending approval",
    413: "the Postmark account may not send",
}


class Refused(Exception):
    """Postmark answered the request with an error status; carries the answer."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.status = response.status_code
        self.headers = response.headers
        self.code, self.message = error_of(response)


class Client(PostmarkClient):
    """postmarker's client; errors keep the whole answer, and the repr never shows the token."""

    def check_response(self, response: requests.Response) -> None:
        if response.status_code != 200:
            raise Refused(response)

    def __repr__(self) -> str:
        return f"<postmark client for {self.root_api_url}>"


def server_token(env: Mapping[str, str], sandbox: bool = False) -> str:
    """The server token from the environment (Postmark's test token for a sandbox send)."""
    if sandbox:
        return TEST_TOKEN
    how = "copy the Server API token from your Postmark server's API Tokens tab"
    return env_secret(env, TOKEN_ENV, how)


def api_host(config: Config) -> str:
    """[postmark] host without a trailing slash; ConfigError when it is not a URL."""
    host = api_base(config.postmark.host, "[postmark] host", "https://api.postmarkapp.com")
    if "/" in host.partition("://")[2]:
        # postmarker joins "/email/batch" to it, which would drop a path silently.
        raise ConfigError(
            f"[postmark] host {host!r} has a path: give only scheme, host and port, "
            "e.g. https://api.postmarkapp.com"
        )
    return host


def check(config: Config, env: Mapping[str, str], sandbox: bool) -> None:
    """ConfigError unless the settings and token can work; connects to nothing."""
    server_token(env, sandbox)
    api_host(config)
    stream = config.postmark.message_stream
    if not stream or not stream.isascii() or not stream.isprintable() or " " in stream:
        raise ConfigError(
            f"[postmark] message_stream {stream!r} is not a stream ID: use the ID Postmark "
            "shows for your Broadcast stream, e.g. broadcast"
        )


def client(config: Config, env: Mapping[str, str], sandbox: bool = False) -> Client:
    return Client(
        server_token=server_token(env, sandbox),
        timeout=config.postmark.timeout,
        root_api_url=api_host(config) + "/",
        max_retries=0,  # never send a batch again on our own: the engine decides
    )


@dataclass(frozen=True)
class Verdict:
    """What an ErrorCode means for the message(s) it names."""

    status: str  # "accepted", "rejected", "temporary" or "account"
    hard_bounce: bool = False
    retry_after: float | None = None


def verdict(code: int) -> Verdict:
    if code == 0:
        return Verdict("accepted")
    if code == INACTIVE_RECIPIENT:
        return Verdict("rejected", hard_bounce=True)
    if code == THROTTLED:
        return Verdict("temporary", retry_after=DEFAULT_429_RETRY_AFTER)
    if code == MAINTENANCE:
        return Verdict("temporary")
    if code in ACCOUNT_CODES:
        return Verdict("account")
    return Verdict("rejected")  # 300 invalid email request, 411 attachment, ...


def error_of(response: requests.Response) -> tuple[int | None, str]:
    """(ErrorCode, Message) of an error answer; (None, its text) when it has no such body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("ErrorCode"), int):
        return data["ErrorCode"], one_line(data.get("Message"))
    return None, one_line(response.text) or response.reason or ""


def one_line(value) -> str:
    return " ".join(str(value or "").split())[:300]


def sent(exc: requests.RequestException) -> bool:
    """Whether the request may have reached Postmark before the connection failed."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return False
    reason = exc.args[0] if exc.args else None
    # A refused or unresolvable connection: urllib3's NewConnectionError is a connect timeout.
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return not isinstance(reason, ConnectTimeoutError)


def retry_after(headers) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date); None without one."""
    return seconds_from((headers or {}).get("Retry-After"))
