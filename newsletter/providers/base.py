"""The neutral interface every mail provider implements: a batch in, a result per recipient out."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from newsletter.config import Config
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
    retry_after: float | None = None  # seconds, from Retry-After / X-RateLimit-Reset
    provider_id: str | None = None  # provider's message id when it gives one
    hard_bounce: bool = False  # a permanent rejection of the address itself: suppress it


@dataclass(frozen=True)
class SendOptions:
    sandbox: bool = False  # SendGrid's sandbox mode: validated, not delivered
    send_at: int | None = None  # unix time to deliver at (SendGrid only)


class Provider:
    """Translates OutgoingMessages to a service's format and transports them; nothing else.

    One instance is used by one thread at a time; the send engine makes one per worker.
    """

    name: ClassVar[str]
    max_batch: ClassVar[int] = 1  # messages per send_batch call
    default_workers: ClassVar[int] = 1
    default_rate: ClassVar[float | None] = None  # messages per second, None = unlimited

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions = SendOptions()
    ) -> None:
        self.config = config
        self.env = env
        self.options = options

    def check(self) -> None:
        """Raise ConfigError when settings or secrets are missing, before anything is sent."""

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """Hand over up to max_batch messages; one Result per message, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
