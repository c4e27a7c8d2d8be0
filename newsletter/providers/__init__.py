"""Mail providers by name: adding one is a module, a line here, a config section and a test file."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

from newsletter.config import Config
from newsletter.errors import ConfigError
from newsletter.providers.base import (
    Provider,
    Result,
    SendOptions,
    Status,
    UnsupportedFeature,
)

__all__ = [
    "PROVIDERS",
    "Provider",
    "Result",
    "SendOptions",
    "Status",
    "UnsupportedFeature",
    "check",
    "get_provider_class",
    "make_provider",
]

PROVIDERS = {
    "outbox": "newsletter.providers.outbox:OutboxProvider",
    "smtp": "newsletter.providers.smtp:SmtpProvider",
    "sendgrid": "newsletter.providers.sendgrid.mail:SendgridProvider",
    "postmark": "newsletter.providers.postmark.mail:PostmarkProvider",
    "resend": "newsletter.providers.resend.mail:ResendProvider",
    "ses": "newsletter.providers.ses.mail:SesProvider",
    "mailgun": "newsletter.providers.mailgun.mail:MailgunProvider",
}


def get_provider_class(name: str) -> type[Provider]:
    try:
        target = PROVIDERS[name]
    except KeyError:
        known = ", ".join(PROVIDERS)
        raise ConfigError(
            f"unknown provider {name!r} (known: {known}); see [send] provider"
        ) from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def check(
    name: str,
    config: Config,
    env: Mapping[str, str] | None = None,
    options: SendOptions | None = None,
) -> None:
    """ConfigError unless the provider's settings, secrets and options can work; no connection."""
    env = os.environ if env is None else env
    get_provider_class(name).check(config, env, options or SendOptions())


def make_provider(
    name: str,
    config: Config,
    env: Mapping[str, str] | None = None,
    options: SendOptions | None = None,
) -> Provider:
    """A ready provider instance; its check() has passed."""
    env = os.environ if env is None else env
    options = options or SendOptions()
    cls = get_provider_class(name)
    cls.check(config, env, options)
    return cls(config, env, options)
