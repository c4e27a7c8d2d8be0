"""The one place Mailgun's API is spoken to: key, domain, region, the SDK client, its answers."""

# The official `mailgun` SDK (mailgun.client.Client) sends the requests. Two of its defaults
# are turned off: it retries 429, 5xx and dropped connections on its own (three times, with
# sleeps), which would send a batch whose answer was lost a second time, so the client gets
# RetryPolicy(max_retries=0) and the engine decides; and it raises for network errors only,
# returning every HTTP answer, which is what we read here.

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from newsletter.config import SECRET_KEYS, Config, check_base_url
from newsletter.errors import ConfigError

API_KEY_ENV = SECRET_KEYS[("mailgun", "api_key")]
REGIONS = {"US": "https://api.mailgun.net", "EU": "https://api.eu.mailgun.net"}
MAX_RECIPIENTS = 1000  # `to` addresses per batch request
MAX_MESSAGE_BYTES = 25_000_000  # Mailgun's message size limit, counted on the whole request
DEFAULT_429_RETRY_AFTER = 1.0


def api_key(env: Mapping[str, str]) -> str:
    """The private API key from the environment; ConfigError saying where to get it."""
    key = env.get(API_KEY_ENV, "").strip()
    if not key:
        raise ConfigError(
            f"{API_KEY_ENV} is not set: create a sending or private API key in Mailgun "
            f"(Settings > API Keys) and export it as {API_KEY_ENV}"
        )
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise ConfigError(f"{API_KEY_ENV} contains spaces or control characters: copy it again")
    return key


def base_url(config: Config) -> str:
    """[mailgun] base_url without a trailing slash; ConfigError unless it is a bare API root."""
    url = config.mailgun.base_url.rstrip("/")
    check_base_url(url, "[mailgun] base_url")
    if "/" in url.partition("://")[2]:
        # The SDK adds /v3/<domain>/messages itself; a path here would be sent twice or dropped.
        raise ConfigError(
            f"[mailgun] base_url {url!r} has a path: give only scheme, host and port "
            f"({REGIONS['US']} for US accounts, {REGIONS['EU']} for EU ones)"
        )
    return url


def domain(config: Config) -> str:
    """[mailgun] domain; ConfigError when missing or not a domain name."""
    name = (config.mailgun.domain or "").strip()
    if not name:
        raise ConfigError(
            "[mailgun] domain is not set: give the sending domain Mailgun shows under "
            'Sending > Domains, e.g. domain = "mg.example.org"'
        )
    if not name.isascii() or any(c in name for c in "/\\ @?#%") or ".." in name:
        raise ConfigError(f"[mailgun] domain {name!r} is not a domain name (write an IDN as xn--…)")
    return name


def check(config: Config, env: Mapping[str, str]) -> None:
    """ConfigError unless the settings and key can work; connects to nothing."""
    api_key(env)
    base_url(config)
    domain(config)
    if not 0 < config.mailgun.timeout <= 300:
        raise ConfigError("[mailgun] timeout must be more than 0 and at most 300 seconds")


def client(config: Config, env: Mapping[str, str]):
    from mailgun.client import Client
    from mailgun.config import RetryPolicy

    return Client(
        auth=("api", api_key(env)),
        api_url=base_url(config),
        timeout=float(config.mailgun.timeout),
        retry_policy=RetryPolicy(max_retries=0),  # never send a batch again on our own
    )


def message(response: requests.Response) -> str:
    """What Mailgun said in an answer, in one line: its `message`, else the body's text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        return one_line(data["message"])
    return one_line(response.text) or response.reason or ""


def one_line(value) -> str:
    return " ".join(str(value or "").split())[:300]


def cause(exc: BaseException) -> BaseException:
    """The requests exception under the SDK's ApiError (raised `from` it)."""
    while exc.__cause__ is not None and not isinstance(exc, requests.RequestException):
        exc = exc.__cause__
    return exc


def sent(exc: BaseException) -> bool:
    """Whether the request may have reached Mailgun before the connection failed."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return False
    reason = exc.args[0] if exc.args else None
    # A refused or unresolvable connection: urllib3's NewConnectionError is a connect timeout.
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return not isinstance(reason, ConnectTimeoutError)


def describe(exc: BaseException) -> str:
    inner = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    text = one_line(reason if isinstance(reason, BaseException) else inner)
    return text or type(exc).__name__


def retry_after(headers) -> float | None:
    """Seconds to wait, from Retry-After or X-RateLimit-Reset; None without either."""
    headers = headers if headers is not None else {}
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            number = float(reset)
        except ValueError:
            return None
        if number > 1e12:  # a unix time in milliseconds
            number /= 1000
        return max(0.0, number - time.time()) if number > 1e9 else max(0.0, number)
    return None


def delivery_time(send_at: int) -> str:
    """o:deliverytime: an RFC 2822 date."""
    return email.utils.formatdate(send_at, usegmt=True)
