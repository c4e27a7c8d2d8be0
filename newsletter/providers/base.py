"""The provider interface and its batch loop: a batch in, one Result per recipient out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from newsletter.config import Config
from newsletter.errors import ConfigError, ProviderError
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


@dataclass(frozen=True)
class Step:
    """Messages handed over together: one SMTP transaction, one SendGrid request."""

    indexes: tuple[int, ...]  # their positions in the batch
    payload: object = None  # what the provider made of them (a request body, ...)


class Unavailable(Exception):
    """The service cannot be reached now and nothing of the step went: the rest waits too."""


_HANDED_OVER = (Status.ACCEPTED, Status.UNKNOWN)


class Provider:
    """Owns the batch loop and failure policy; a provider only translates and transports."""

    # A provider implements send_one (one message at a time) or plan and transport (steps of
    # several messages). One instance is used by one thread at a time: one per worker.

    name: ClassVar[str]
    max_batch: ClassVar[int] = 1  # messages per send_batch call
    default_workers: ClassVar[int] = 1
    default_rate: ClassVar[float | None] = None  # messages per second, None = unlimited
    supports_send_at: ClassVar[bool] = False  # can deliver at SendOptions.send_at
    max_schedule_ahead: ClassVar[int] = 72 * 3600  # seconds send_at may be ahead, if supported
    supports_sandbox: ClassVar[bool] = False  # can validate, not deliver (SendOptions.sandbox)
    # The engine journals each step reported to the Handover (a crash then leaves only the
    # step under way in doubt); otherwise the whole batch is in flight until send_batch returns.
    reports_handovers: ClassVar[bool] = False
    # A step sent again with the same recipients is not delivered again (an idempotency key
    # within the provider's window): unknown outcomes are safe to retry (--resend-unknown).
    idempotent: ClassVar[bool] = False

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions | None = None
    ) -> None:
        self.config = config
        self.env = env
        self.options = options or SendOptions()

    @classmethod
    def check(cls, config: Config, env: Mapping[str, str], options: SendOptions) -> None:
        """Raise ConfigError when settings, secrets or options cannot work; connects to nothing."""
        if options.send_at is not None and not cls.supports_send_at:
            raise cls.unsupported_feature("send_at")
        if options.sandbox and not cls.supports_sandbox:
            raise cls.unsupported_feature("sandbox")

    @classmethod
    def unsupported_feature(cls, feature: str) -> UnsupportedFeature:
        """The error for an option this provider lacks, naming the providers that have it."""
        from newsletter.providers import PROVIDERS, get_provider_class

        lacks, instead = _FEATURES[feature]
        able = [n for n in PROVIDERS if getattr(get_provider_class(n), f"supports_{feature}")]
        if able:
            instead = f"use {' or '.join(able)}, or {instead}"
        return UnsupportedFeature(f"the {cls.name} provider {lacks}; {instead}")

    @classmethod
    def encode_ahead(cls, message: OutgoingMessage) -> object | None:
        """This recipient's part of a request, from the message alone (no settings, no
        connection), or None to leave it all to `plan`.

        The read-ahead process (sending/readahead.py) calls it on another core while the
        sending threads talk to the provider; `plan` finds the result with `ahead_of` and
        skips that work. It may raise: `plan` then meets the same error and reports it.
        """
        return None

    def ahead_of(self, message: OutgoingMessage) -> object | None:
        """What this provider's `encode_ahead` made of the message, if the read-ahead ran it."""
        ahead = message.ahead
        return ahead[1] if ahead is not None and ahead[0] == self.name else None

    def send_batch(
        self, messages: Sequence[OutgoingMessage], handover: Handover = UNREPORTED
    ) -> list[Result]:
        """Hand over up to max_batch messages step by step; one Result per message, in order."""
        # Every step goes through handover.before and .after. When the service becomes
        # unreachable (Unavailable), or refuses us as a whole (ProviderError) once part of the
        # batch was handed over, that step and the rest are TEMPORARY: the next batch meets
        # the same trouble at once. A ProviderError before anything was handed over goes up.
        steps, results = self.plan(messages)
        if results:  # refused while planning: final answers that never needed a step
            handover.before([messages[index] for index in results])
            handover.after(list(results.values()))
        for step in steps:
            handover.before([messages[index] for index in step.indexes])
            try:
                self.transport(step, messages, results)
            except (Unavailable, ProviderError) as exc:
                if isinstance(exc, ProviderError) and not any(
                    r.status in _HANDED_OVER for r in results.values()
                ):
                    raise
                for index, message in enumerate(messages):
                    results.setdefault(index, Result(message.key, Status.TEMPORARY, str(exc)))
                handover.after([results[index] for index in step.indexes])
                break
            handover.after([results[index] for index in step.indexes])
        return [results[index] for index in range(len(messages))]

    def plan(self, messages: Sequence[OutgoingMessage]) -> tuple[list[Step], dict[int, Result]]:
        """The steps the batch goes in, and Results for messages refused before any step."""
        return [Step((index,)) for index in range(len(messages))], {}

    def transport(
        self, step: Step, messages: Sequence[OutgoingMessage], results: dict[int, Result]
    ) -> None:
        """Hand one step over; a Result for each of its indexes into `results` as it is known."""
        for index in step.indexes:
            results[index] = self.send_one(messages[index])

    def send_one(self, message: OutgoingMessage) -> Result:
        """Hand one message over (providers that go one message at a time)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
