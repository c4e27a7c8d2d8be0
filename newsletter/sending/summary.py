"""What a send did: its Summary, the Progress it reports, and the Tally its threads share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.errors import ExitCode, ProviderError

if TYPE_CHECKING:
    from newsletter.sending.planning import Plan

LISTED = 20  # failures and unknowns named in a summary; `newsletter status` has them all


@dataclass(frozen=True)
class Progress:
    total: int  # planned recipients of this run
    done: int  # handed over and answered (sent, failed, unknown, left for retry)
    sent: int
    failed: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return (
            (self.total - self.done) / self.rate if self.rate and self.total > self.done else None
        )


@dataclass
class Summary:
    plan: Plan
    dry_run: bool = False
    sent: int = 0  # accepted by the provider in this run (or, dry, that would be handed over)
    failed: int = 0  # failed permanently in this run
    unknown: int = 0  # outcome unknown in this run
    retry: int = 0  # failed temporarily: the next run tries them again
    stopped: str | None = None  # why the provider stopped the send
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)  # (email, reason), up to LISTED
    unknowns: list[str] = field(default_factory=list)  # emails, up to LISTED
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason), LISTED
    expected: int | None = None  # recipients counted before the run, when it was given

    @property
    def remaining(self) -> int:
        """Recipients planned for this run that it did not get to (stopped or interrupted)."""
        planned = max(self.expected or 0, self.plan.to_send)
        return max(0, planned - self.sent - self.failed - self.unknown - self.retry)

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.stopped:
            return ExitCode.PROVIDER
        incomplete = self.failed + self.unknown + self.retry + self.plan.failed + self.plan.unknown
        # Rows skipped as malformed did not get the issue either: the send is not complete.
        return ExitCode.INCOMPLETE if incomplete or self.plan.invalid else ExitCode.OK


class Tally:
    """The summary of a running send, shared by its threads: one lock, the first fatal error,
    the stop every thread watches, and the progress reports."""

    def __init__(
        self,
        summary: Summary,
        stop: threading.Event | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.summary = summary
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.lock = threading.Lock()
        self.fatal: BaseException | None = None
        self.started = time.monotonic()

    def halt(self, exc: BaseException) -> None:
        """Stop the send for `exc`; the first such error is the one the run ends with."""
        with self.lock:
            if self.fatal is None:
                self.fatal = exc
                if isinstance(exc, ProviderError):
                    self.summary.stopped = str(exc)
        self.stop.set()

    def progress(self) -> None:
        if self.on_progress is None:
            return
        with self.lock:
            s = self.summary
            done = s.sent + s.failed + s.unknown + s.retry
            total = max(s.expected or 0, s.plan.to_send, done)
            snapshot = Progress(total, done, s.sent, s.failed, time.monotonic() - self.started)
            self.on_progress(snapshot)
