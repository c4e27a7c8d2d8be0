"""The one place SendGrid's v3 API is spoken to: key, host, client, error bodies, waits, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import python_http_client.exceptions as http_errors
import sendgrid
from python_http_client.client import Client

from newsletter.config import SECRET_KEYS, Config
from newsletter.errors import ConfigError
from newsletter.providers.common import api_base, env_secret, seconds_from

API_KEY_ENV = SECRET_KEYS[("sendgrid", "api_key")]
MAIL_SEND = "Mail Send"  # the API key permissions each use needs, as SendGrid names them
SUPPRESSIONS_READ = "Suppressions read"
MAX_SCHEDULE_SECONDS = 72 * 3600  # how far ahead send_at may be


def api_key(env: Mapping[str, str], permission: str) -> str:
    """The API key from the environment; ConfigError saying how to make one when it is unusable."""
    return env_secret(
        env, API_KEY_ENV, f"create a SendGrid API key with the {permission} permission"
    )


def api_host(config: Config) -> str:
    """[sendgrid] host without a trailing slash; ConfigError when it is not a URL."""
    return api_base(
        config.sendgrid.host,
        "[sendgrid] host",
        "https://api.sendgrid.com (or https://api.eu.sendgrid.com for EU data residency)",
    )


def check_send_at(send_at: int | None) -> None:
    """ConfigError when SendGrid cannot schedule that far ahead."""
    if send_at is not None and send_at > time.time() + MAX_SCHEDULE_SECONDS:
        raise ConfigError("send_at is more than 72 hours ahead: SendGrid cannot schedule that far")


def client(config: Config, env: Mapping[str, str], permission: str) -> Client:
    """The official client's request builder for [sendgrid] host, with its timeout."""
    key, host = api_key(env, permission), api_host(config)
    builder = sendgrid.SendGridAPIClient(api_key=key, host=host).client
    builder.timeout = config.sendgrid.timeout
    return builder


def errors(body) -> list[dict]:
    """The `errors` of a SendGrid error body; [] when it has none."""
    try:
        data = json.loads(body or b"{}")
    except (TypeError, ValueError):
        return []
    found = data.get("errors") if isinstance(data, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def format_error(error: dict) -> str:
    """One error of the body as a phrase: its message, and the field it names."""
    text = " ".join(str(error.get("message") or "error").split())
    where = error.get("field")
    return f"{text} (field {where})" if where else text


def details(exc: http_errors.HTTPError) -> str:
    """What SendGrid said about a refused request, in one line."""
    return (
        "; ".join(format_error(e) for e in errors(exc.body)) or _text(exc.body) or str(exc.reason)
    )


def _text(body) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return " ".join(str(body or "").split())[:300]


def retry_after(headers) -> float | None:
    """Seconds to wait, from Retry-After or X-RateLimit-Reset (a unix time); None if neither."""
    headers = headers if headers is not None else {}
    waited = seconds_from(headers.get("Retry-After"))
    if waited is not None:
        return waited
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        return max(0.0, value - time.time()) if value > 1e9 else max(0.0, value)
    return None
