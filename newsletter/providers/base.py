"""The neutral interface every mail provider implements: a batch in, a result per recipient out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from newsletter.config import Config
from newsletter.errors import ConfigError
from newsletter.message import OutgoingMessage


class Status(enum.Enum):
    ACCEPTED = "accepted"  # the provider took responsibility for delivery
    REJECTED = "rejected"  # permanent: do not retry this recipient (e.g. 5xx for the address)
    TEMPORARY = "temporary"  # not sent; safe to retry (429, 4xx, connection refused before sending)
    UNKNOWN = "unknown"  # the request went out but no answer came back: it may have been sent


@dataclass(frozen=True, slots=True)
class Result:
    key: str  # OutgoingMessage.key of the recipient
    status: Status
    reason: str = ""
    retry_after: float | None = None  # throttled: wait this long (not a failure); None = failed
    provider_id: str | None = None  # provider's message id when it gives one
    hard_bounce: bool = False  # a permanent rejection of the address itself: suppress it


@dataclass(frozen=True)
class SendOptions:
    sandbox: bool = False  # validated by the provider, not delivered (Provider.supports_sandbox)
    send_at: int | None = None  # unix time to deliver at (Provider.supports_send_at)


class Handover(Protocol):
    """What a provider that hands a batch over in steps tells the send engine as it goes.

    The engine notes each step in the worker's journal (journal.py), so a crash leaves in
    flight only the step that was under way: one message per SMTP connection, one request
    per SendGrid worker.
    """

    def before(self, messages: Sequence[OutgoingMessage]) -> None:
        """These messages are about to be handed over (nothing of them has gone out yet)."""

    def after(self, results: Sequence[Result]) -> None:
        """The answers for messages of the last `before`, as soon as they are known."""


class UnsupportedFeature(ConfigError):
    """A SendOptions feature the provider lacks: refused, never silently dropped."""


# What each option asks for, and what to do instead when the provider lacks it.
_FEATURES = {
    "send_at": ("cannot schedule (--at)", "run `newsletter send` from cron at that time"),
    "sandbox": ("has no sandbox mode (--sandbox)", "drop --sandbox"),
}


class _Unreported:
    """The Handover of a send_batch call that nobody follows."""

    def before(self, messages: Sequence[OutgoingMessage]) -> None:
        pass

    def after(self, results: Sequence[Result]) -> None:
        pass


UNREPORTED = _Unreported()


class Provider:
    """Translates OutgoingMessages to a service's format and transports them; nothing else.

    One instance is used by one thread at a time; the send engine makes one per worker.
    """

    name: ClassVar[str]
    max_batch: ClassVar[int] = 1  # messages per send_batch call
    default_workers: ClassVar[int] = 1
    default_rate: ClassVar[float | None] = None  # messages per second, None = unlimited
    supports_send_at: ClassVar[bool] = False  # can deliver at SendOptions.send_at
    supports_sandbox: ClassVar[bool] = False  # can validate, not deliver (SendOptions.sandbox)
    # send_batch takes a Handover and reports each step of the batch to it; otherwise the
    # whole batch is in flight until send_batch returns.
    reports_handovers: ClassVar[bool] = False

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions = SendOptions()
    ) -> None:
        self.config = config
        self.env = env
        self.options = options

    def check(self) -> None:
        """Raise ConfigError when settings, secrets or options cannot work, before anything is sent.

        Providers that add checks call super().check() first.
        """
        if self.options.send_at is not None and not self.supports_send_at:
            raise self.unsupported_feature("send_at")
        if self.options.sandbox and not self.supports_sandbox:
            raise self.unsupported_feature("sandbox")

    def unsupported_feature(self, feature: str) -> UnsupportedFeature:
        """The error for an option this provider lacks, naming the providers that have it."""
        from newsletter.providers import PROVIDERS, get_provider_class

        lacks, instead = _FEATURES[feature]
        able = [n for n in PROVIDERS if getattr(get_provider_class(n), f"supports_{feature}")]
        if able:
            instead = f"use {' or '.join(able)}, or {instead}"
        return UnsupportedFeature(f"the {self.name} provider {lacks}; {instead}")

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """Hand over up to max_batch messages; one Result per message, in order.

        With reports_handovers it is send_batch(messages, handover=UNREPORTED), and every
        message whose Result is final has been through handover.before and handover.after.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
