"""One batch through the provider: the rate limit, retries with backoff, every outcome recorded."""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time

from tenacity import Retrying, retry_if_result

from newsletter.errors import ProviderError
from newsletter.message import OutgoingMessage
from newsletter.providers import Provider, Result, Status
from newsletter.sending.handover import JournalHandover, outcome_of
from newsletter.sending.journal import Journal
from newsletter.sending.ledger import RETRY, Ledger, Outcome
from newsletter.sending.options import Settings
from newsletter.sending.prepared import Prepared
from newsletter.sending.summary import LISTED, Tally


class RateLimiter:
    """Spaces hand-overs so that all workers together stay under `rate` messages per second."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def acquire(self, count: int, stop: threading.Event) -> bool:
        """Wait for the slot of `count` messages; False when stopped while waiting."""
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next, self.paused_until)
            self.next = start + count * self.interval
        return not (start > now and stop.wait(start - now))

    def pause(self, seconds: float) -> None:
        """Hold every worker back: the provider asked for a break (Retry-After)."""
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class Stopped(Exception):
    """A worker saw the send being stopped before its batch went out."""


class Delivery:
    """Hands the batches of one run to its workers' providers; shared by the worker threads."""

    def __init__(
        self, prepared: Prepared, ledger: Ledger, settings: Settings, tally: Tally, run_id: int
    ) -> None:
        self.prepared = prepared
        self.ledger = ledger
        self.settings = settings
        self.tally = tally
        self.run_id = run_id
        self.rate = RateLimiter(settings.rate)
        self.batch_numbers = itertools.count(1)
        self.consecutive_failures = 0

    def deliver(
        self, provider: Provider, batch: list[OutgoingMessage], journal: Journal | None
    ) -> None:
        """Hand one batch over, retrying what failed temporarily; record every outcome."""
        settings = self.settings
        slug, list_name = self.prepared.slug, self.prepared.list_name
        number = next(self.batch_numbers)
        pending = {m.key: m for m in batch}
        last: dict[str, Result] = {}
        failures = 0
        delivered = False  # something of this batch was accepted: its troubles are per recipient

        def attempt() -> None:
            nonlocal failures, delivered
            if self.tally.stop.is_set() or not self.rate.acquire(len(pending), self.tally.stop):
                raise Stopped
            messages = list(pending.values())
            handover = None
            if provider.reports_handovers:
                handover = JournalHandover(journal, number)
                handover.opening(messages)
            self.ledger.mark_in_flight(
                slug, list_name, self.run_id, number, [(m.key, m.to_email) for m in messages]
            )
            try:
                if handover is None:
                    results = provider.send_batch(messages)
                else:
                    results = provider.send_batch(messages, handover)
            except ProviderError as exc:
                # The provider refused the request as a whole: nothing in it was sent.
                self.ledger.record(slug, [Outcome(k, RETRY, None, str(exc)) for k in pending])
                with self.tally.lock:
                    self.tally.summary.retry += len(pending)
                pending.clear()
                if journal is not None:
                    journal.clear()
                raise
            except BaseException as exc:
                if handover is None:
                    unanswered = [Result(k, Status.UNKNOWN, repr(exc)) for k in pending]
                    self._record(pending, unanswered, True)
                else:
                    self._record_broken(pending, handover, exc)
                    if journal is not None:
                        journal.clear()
                raise
            temporary, accepted = self._record(pending, results, not delivered)
            delivered = delivered or accepted
            last.update((r.key, r) for r in temporary)
            throttled = [r.retry_after for r in temporary if r.retry_after is not None]
            if throttled:
                self.rate.pause(max(throttled))
            if temporary and len(throttled) < len(temporary):
                failures += 1

        def wait(retry_state) -> float:
            throttled = [last[k].retry_after for k in pending if last[k].retry_after is not None]
            if throttled:
                return max(throttled) + random.uniform(0, 0.1)
            ceiling = min(settings.backoff_max, settings.backoff * 2 ** max(0, failures - 1))
            return random.uniform(ceiling / 2, ceiling)

        def set_aside(retry_state) -> None:
            # Not sent, and safe to send again: out of flight while we wait.
            self.ledger.record(slug, [outcome_of(last[k]) for k in pending])

        retrying = Retrying(
            retry=retry_if_result(lambda _: bool(pending) and not self.tally.stop.is_set()),
            stop=lambda _: failures >= settings.max_attempts,
            wait=wait,
            sleep=self.tally.stop.wait,
            before_sleep=set_aside,
            retry_error_callback=lambda _: None,
            reraise=True,
        )
        with contextlib.suppress(Stopped):
            retrying(attempt)
        if pending:
            self.ledger.record(slug, [outcome_of(last[k]) for k in pending if k in last])
            with self.tally.lock:
                self.tally.summary.retry += sum(1 for k in pending if k in last)
            self.tally.progress()
        if journal is not None:
            journal.clear()  # all of the batch is in the ledger now

    def _record_broken(
        self, pending: dict[str, OutgoingMessage], handover: JournalHandover, exc: BaseException
    ) -> None:
        """A provider that reported its steps failed: only the step under way is unknown."""
        idle = handover.never_handed(list(pending))
        self.ledger.release(self.prepared.slug, idle)  # the next run sends them
        for key in idle:
            del pending[key]
        unknown = [Result(key, Status.UNKNOWN, repr(exc)) for key in handover.open]
        self._record(pending, [*handover.answers.values(), *unknown], True)

    def _record(
        self,
        pending: dict[str, OutgoingMessage],
        results: list[Result],
        systemic: bool,
    ) -> tuple[list[Result], bool]:
        """Store final outcomes and take them out of `pending`; (the temporary ones, any accepted).

        An attempt where nothing was accepted counts towards max_consecutive_failures when it
        is `systemic`: nothing of its batch got through before either. Retrying the few
        recipients a server keeps deferring (greylisting) must not stop the whole send.
        """
        by_key = {r.key: r for r in results}
        final, temporary, bounced = [], [], []
        accepted = failed = False
        reason = ""
        for key, message in list(pending.items()):
            result = by_key.get(key) or Result(key, Status.UNKNOWN, "the provider gave no answer")
            if result.status is Status.TEMPORARY:
                temporary.append(result)
                failed = failed or result.retry_after is None
                reason = reason or result.reason
                continue
            del pending[key]
            final.append((message, result))
            accepted = accepted or result.status is Status.ACCEPTED
            if result.status is not Status.ACCEPTED and not result.hard_bounce:
                failed, reason = True, reason or result.reason
            if result.hard_bounce:
                bounced.append((message.to_email, f"hard bounce: {result.reason}"))
        outcomes = [outcome_of(r) for _, r in final]
        if outcomes:
            self.ledger.record(self.prepared.slug, outcomes)
        if bounced:
            from newsletter.store.lists import add_suppressions

            add_suppressions(self.prepared.config, bounced)
        with self.tally.lock:
            summary = self.tally.summary
            for message, result in final:
                if result.status is Status.ACCEPTED:
                    summary.sent += 1
                elif result.status is Status.REJECTED:
                    summary.failed += 1
                    if len(summary.failures) < LISTED:
                        summary.failures.append((message.to_email, result.reason))
                else:
                    summary.unknown += 1
                    if len(summary.unknowns) < LISTED:
                        summary.unknowns.append(message.to_email)
            if accepted:
                self.consecutive_failures = 0
            elif failed and systemic:
                self.consecutive_failures += 1
                limit = self.settings.max_consecutive_failures
                if self.consecutive_failures >= limit and self.tally.fatal is None:
                    self.tally.fatal = ProviderError(
                        f"stopped after {limit} failed attempts in a row; "
                        f"last: {reason or 'no reason given'}"
                    )
                    summary.stopped = str(self.tally.fatal)
                    self.tally.stop.set()
        if final:
            self.tally.progress()
        return temporary, accepted
