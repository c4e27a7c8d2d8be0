"""The one place Resend's API is spoken to: key, host, the SDK's client, its errors and waits."""

# The official SDK keeps its key, base URL and HTTP client in module globals. They are set
# before each request from this workspace's settings, so the same process can speak to a
# real account or a loopback server; every worker of a send uses the same values.

from __future__ import annotations

import threading
from collections.abc import Mapping

import requests
import resend
from resend.http_client import HTTPClient

from newsletter.config import SECRET_KEYS, Config
from newsletter.providers.common import api_base, env_secret, seconds_from

API_KEY_ENV = SECRET_KEYS[("resend", "api_key")]
MAX_BATCH = 100  # emails per POST /emails/batch
IDEMPOTENCY_WINDOW = 24 * 3600  # how long Resend answers a repeated key with its first answer


def api_key(env: Mapping[str, str]) -> str:
    """The API key from the environment; ConfigError saying how to make one when unusable."""
    return env_secret(env, API_KEY_ENV, "create a Resend API key with sending access")


def api_host(config: Config) -> str:
    """[resend] host without a trailing slash; ConfigError when it is not a URL."""
    return api_base(config.resend.host, "[resend] host", "https://api.resend.com")


class Transport(Exception):
    """The HTTP exchange failed; `sent` when the request may have reached Resend."""

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class Client(HTTPClient):
    """The SDK's HTTP client with a kept-alive session per thread and our timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def request(self, method, url, headers, json=None, files=None, data=None):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        try:
            response = session.request(
                method, url, headers=headers, json=json, data=data, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise Transport(describe(exc), sent=not _before_sending(exc)) from exc
        return response.content, response.status_code, response.headers


def _before_sending(exc: requests.RequestException) -> bool:
    """Whether the request certainly never left: no connection was made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        inner = getattr(reason, "reason", None)
        name = type(inner).__name__
        return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")
    return False


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


_clients: dict[float, Client] = {}


def use(config: Config, env: Mapping[str, str]) -> None:
    """Point the SDK at [resend] host with the key from the environment."""
    timeout = config.resend.timeout
    client = _clients.get(timeout) or _clients.setdefault(timeout, Client(timeout))
    resend.api_key = api_key(env)
    resend.api_url = api_host(config)
    resend.default_http_client = client


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait, from retry-after or ratelimit-reset (seconds); None if neither."""
    waited = seconds_from(header(headers, "retry-after"))
    if waited is not None:
        return waited
    reset = header(headers, "ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset))
        except ValueError:
            return None
    return None
