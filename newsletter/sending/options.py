"""How a send runs: its speed and retry settings, and when it goes out (--at), per provider."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from newsletter.config import Config
from newsletter.errors import ExitCode, SendError
from newsletter.providers import get_provider_class

LATE_GRACE = dt.timedelta(minutes=10)  # a schedule this far in the past still goes out now


class OptionError(SendError):
    """An option of the send cannot work (a bad rate, a schedule the provider cannot keep)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Settings:
    """How fast and how hard to try: options, then [send] config, then provider defaults."""

    workers: int = 1
    rate: float | None = None  # messages per second over all workers; None = no cap
    batch_size: int = 1
    max_consecutive_failures: int = 10
    max_attempts: int = 6  # per batch, not counting attempts the provider throttled
    backoff: float = 1.0  # seconds before the first retry, doubled each failure (with jitter)
    backoff_max: float = 60.0
    limit: int | None = None
    resend_unknown: bool = False
    dry_run: bool = False
    read_ahead: bool = True  # sends read the list in a forked process (see readahead)


def settings_for(
    config: Config,
    provider: str,
    *,
    workers: int | None = None,
    rate: float | None = None,
    batch_size: int | None = None,
    **options,
) -> Settings:
    cls = get_provider_class(provider)
    send = config.send
    workers = workers or send.workers or cls.default_workers
    batch = min(batch_size or send.batch_size or cls.max_batch, cls.max_batch)
    if workers < 1 or batch < 1:
        raise OptionError("--workers and the batch size must be at least 1")
    rate = rate if rate is not None else send.rate if send.rate is not None else cls.default_rate
    if rate is not None and rate <= 0:
        raise OptionError(f"the rate must be above 0 messages per second, not {rate}")
    return Settings(
        workers=workers,
        rate=rate,
        batch_size=batch,
        max_consecutive_failures=max(1, send.max_consecutive_failures),
        **options,
    )


def parse_when(text: str) -> dt.datetime:
    """An ISO 8601 date and time (`2024-05-01T09:00`, local time unless it has an offset)."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise OptionError(
            f"--at {text!r}: expected a date and time like 2024-05-01T09:00 "
            "or 2024-05-01T09:00+02:00"
        ) from None
    return when.astimezone() if when.tzinfo is None else when


@dataclass(frozen=True)
class Schedule:
    send_at: int | None  # unix time for the provider; None = now
    late_by: dt.timedelta | None = None  # the time was this long ago (beyond the grace period)


def schedule(when: dt.datetime, provider: str, now: dt.datetime | None = None) -> Schedule:
    """What --at means for this provider: a send_at, now, or a clear refusal."""
    now = now or dt.datetime.now(dt.UTC)
    if when <= now:
        late = now - when
        return Schedule(None, late if late > LATE_GRACE else None)
    if not supports(provider, "send_at"):
        raise OptionError(
            f"provider {provider} cannot schedule a send (only "
            f"{providers_supporting('send_at')} can); newsletter does "
            "not keep a daemon running: run `newsletter send` at that time (cron, at) instead"
        )
    hours = get_provider_class(provider).max_schedule_ahead // 3600
    if when - now > dt.timedelta(hours=hours):
        raise OptionError(
            f"--at {when:%Y-%m-%d %H:%M %z} is more than {hours} hours ahead; {provider} accepts "
            f"schedules up to {hours} hours out: run `newsletter send` later (cron, at) instead"
        )
    return Schedule(int(when.timestamp()))


def supports(provider: str, feature: str) -> bool:
    """Whether a provider implements an optional SendOptions feature (send_at, sandbox)."""
    return bool(getattr(get_provider_class(provider), f"supports_{feature}"))


def providers_supporting(feature: str) -> str:
    """The names of the providers that implement a feature, for messages: "sendgrid"."""
    from newsletter.providers import PROVIDERS

    return " or ".join(name for name in PROVIDERS if supports(name, feature)) or "none"
