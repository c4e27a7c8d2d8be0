"""The send loop: plan -> filter by ledger -> batches -> workers -> results -> ledger.

Exactly once: a recipient is written `in_flight` before the provider sees their message and
becomes `sent` only on the provider's acceptance. A batch is marked in flight as a whole
and its outcomes recorded together; providers that report their steps (SMTP, SendGrid) are
followed step by step in each worker's journal (handover.py, journal.py), so a crash leaves
only the step under way unknown. Temporary failures are retried (tenacity, exponential
backoff with jitter, Retry-After honoured); throttling alone never fails a send.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import Retrying, retry_if_result

from newsletter.config import Config
from newsletter.errors import ExitCode, ProviderError, SendError
from newsletter.message import Campaign, OutgoingMessage
from newsletter.providers import Provider, Result, Status, get_provider_class
from newsletter.render import fill
from newsletter.sample import CheckedIssue, check_issue, find_recipient
from newsletter.sending import ledger as states
from newsletter.sending import readahead
from newsletter.sending.handover import JournalHandover, outcome_of
from newsletter.sending.journal import Journal
from newsletter.sending.ledger import LEDGER_NAME, Ledger, Outcome
from newsletter.sending.regroup import regroup
from newsletter.subscribers.sending import Skipped
from newsletter.tokens import load_secret

TEST_PREFIX = "[TEST] "
SCHEDULE_WINDOW = dt.timedelta(hours=72)  # SendGrid accepts send_at up to 72 hours ahead
LATE_GRACE = dt.timedelta(minutes=10)  # a schedule this far in the past still goes out now
LISTED = 20  # failures and unknowns named in a summary; `newsletter status` has them all


class ChecksFailed(SendError):
    """The preview checks found errors: nothing is sent."""

    exit_code = ExitCode.CHECKS_FAILED


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


# Preparing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRecipient:
    """A --test-to address, with the merge fields of a real subscriber (--as) or defaults."""

    email: str
    key: str
    name: str
    fields: dict[str, str]

    def merge_fields(self) -> dict[str, str]:
        return self.fields


@dataclass
class Prepared:
    """A send that passed the checks: the campaign and where its recipients come from."""

    config: Config
    checked: CheckedIssue
    campaign: Campaign
    list_name: str
    provider: str
    test_recipients: list[SampleRecipient] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.checked.issue.slug

    @property
    def is_test(self) -> bool:
        return bool(self.test_recipients)

    @property
    def subject(self) -> str:
        """The subject with merge fields shown as written, e.g. `News for {{ subscriber.name }}`."""
        rendered = self.checked.rendered
        sources = {i: f"{{{{ {f.source} }}}}" for i, f in enumerate(rendered.merge_fields)}
        return self.campaign.subject_prefix + fill(rendered.subject_parts, sources)

    def recipients(self, dropped=None) -> Iterator:
        """Who this send goes to, streamed: subscribed, not suppressed, not opted out (even
        where the list does not show it yet), each address once; bad rows come as Skipped."""
        # `dropped`, a subscribers.SendableStats, counts the rows left out as they stream by.
        if self.is_test:
            return iter(self.test_recipients)
        from newsletter import optouts
        from newsletter.subscribers import sendable

        config = self.config
        withdrawn = optouts.withdrawn(config.state_dir, self.list_name, self.campaign.secret)
        return sendable(
            config.subscribers_dir, self.list_name, dropped, withdrawn, skip_bad_rows=True
        )


def prepare(
    config: Config,
    issue_path: Path,
    *,
    list_name: str | None = None,
    provider: str | None = None,
    test_to: Iterable[str] = (),
    as_email: str | None = None,
) -> Prepared:
    """Render and check the issue (ChecksFailed on errors) and set up the campaign."""
    from newsletter.issue import load_issue

    issue = load_issue(issue_path)
    list_name = list_name or issue.list or config.list
    provider = provider or config.send.provider
    get_provider_class(provider)  # an unknown name fails before anything is rendered
    secret = load_secret(config.state_dir)
    fields, name = {}, ""
    if as_email:
        fields, name = find_recipient(config, list_name, as_email)
    checked = check_issue(
        config, issue, recipient=fields or None, name=name, list_name=list_name, secret=secret
    )
    if checked.errors:
        raise ChecksFailed(
            f"the issue has {len(checked.errors)} error(s); nothing was sent "
            f"(first: {checked.errors[0]}); run `newsletter preview {issue_path}` for all"
        )
    test_to = list(test_to)
    if not test_to:
        from newsletter import optouts

        optouts.catch_up(config, secret)  # unsubscribes and bounces the lists do not show yet
    campaign = Campaign(
        config, checked.rendered, list_name, secret, subject_prefix=TEST_PREFIX if test_to else ""
    )
    recipients = [_test_recipient(address, fields, name) for address in test_to]
    return Prepared(config, checked, campaign, list_name, provider, recipients)


def _test_recipient(address: str, fields: dict[str, str], name: str) -> SampleRecipient:
    from newsletter.subscribers import email_key

    address = address.strip()
    if "@" not in address:
        raise OptionError(f"--test-to {address!r} is not an email address")
    return SampleRecipient(address, email_key(address), name, fields or {"email": address})


def open_ledger(
    config: Config, prepared: Prepared, *, sandbox: bool = False, dry_run: bool = False
) -> Ledger:
    """The workspace ledger; test and sandbox sends deliver nothing real and use a scratch one."""
    path = config.state_dir / LEDGER_NAME
    if prepared.is_test or sandbox or (dry_run and not path.exists()):
        return Ledger(None)
    return Ledger(path)


# Scheduling -----------------------------------------------------------------------------


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
    if when - now > SCHEDULE_WINDOW:
        raise OptionError(
            f"--at {when:%Y-%m-%d %H:%M %z} is more than 72 hours ahead; providers accept "
            "schedules up to 72 hours out: run `newsletter send` later (cron, at) instead"
        )
    if not supports(provider, "send_at"):
        raise OptionError(
            f"provider {provider} cannot schedule a send (only "
            f"{providers_supporting('send_at')} can); newsletter does "
            "not keep a daemon running: run `newsletter send` at that time (cron, at) instead"
        )
    return Schedule(int(when.timestamp()))


def supports(provider: str, feature: str) -> bool:
    """Whether a provider implements an optional SendOptions feature (send_at, sandbox)."""
    return bool(getattr(get_provider_class(provider), f"supports_{feature}"))


def providers_supporting(feature: str) -> str:
    """The names of the providers that implement a feature, for messages: "sendgrid"."""
    from newsletter.providers import PROVIDERS

    return " or ".join(name for name in PROVIDERS if supports(name, feature)) or "none"


# Planning -------------------------------------------------------------------------------


@dataclass
class Plan:
    """Who this send will go to, counted before anything is sent."""

    to_send: int = 0
    already_sent: int = 0
    unknown: int = 0  # outcome unknown from an earlier send: held back (see --resend-unknown)
    failed: int = 0  # failed permanently in an earlier send: not retried
    over_limit: int = 0  # left for a later run by --limit
    invalid: int = 0  # rows of the list skipped as malformed (see subscribers validate)
    left_out: dict[str, int] = field(default_factory=dict)  # unsubscribed, suppressed, …
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason), LISTED


def _classified(prepared: Prepared, ledger: Ledger, resend_unknown: bool, dropped) -> Iterator:
    """(recipient, key, state it is held back in or None when it is to be sent), streamed."""
    recipients = prepared.recipients(dropped)
    while chunk := list(itertools.islice(recipients, readahead.CHUNK)):
        keys = [r.key for r in chunk]  # normalised once: the property computes it each time
        blocked = ledger.blocked(prepared.slug, keys, resend_unknown)
        for recipient, key in zip(chunk, keys, strict=True):
            yield recipient, key, blocked.get(key)


def _admit(plan: Plan, state: str | None, limit: int | None) -> bool:
    """Count one recipient into the plan; True when it is to be sent now.

    Held back by the ledger (`state`: sent, failed, unknown) or past --limit, it is not.
    """
    if state == states.SENT:
        plan.already_sent += 1
    elif state == states.FAILED:
        plan.failed += 1
    elif state:
        plan.unknown += 1
    elif limit is not None and plan.to_send >= limit:
        plan.over_limit += 1
    else:
        plan.to_send += 1
        return True
    return False


def plan(prepared: Prepared, ledger: Ledger, settings: Settings) -> Plan:
    """Count recipients to send now, and those left out and why (one pass over the list)."""
    from newsletter.subscribers import SendableStats

    out, dropped = Plan(), SendableStats()
    for recipient, _, state in _classified(prepared, ledger, settings.resend_unknown, dropped):
        if state is None and type(recipient) is Skipped:
            out.invalid += 1
            if len(out.skipped) < LISTED:
                out.skipped.append((recipient.where, recipient.reason))
        else:
            _admit(out, state, settings.limit)
    _count_left_out(prepared, out, dropped)
    return out


def _count_left_out(prepared: Prepared, plan: Plan, dropped) -> None:
    """Rows of the list not sent to and why: their status, suppressed, or repeated."""
    if prepared.is_test:
        return
    reasons = {**dropped.not_subscribed, "suppressed": dropped.suppressed}
    reasons["repeated"] = dropped.repeated
    reasons["invalid"] = plan.invalid
    plan.left_out = {why: n for why, n in reasons.items() if n}


# Running --------------------------------------------------------------------------------


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


ProviderFactory = Callable[[], Provider]


def run(
    prepared: Prepared,
    ledger: Ledger,
    provider_factory: ProviderFactory,
    settings: Settings,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    total: int | None = None,
) -> Summary:
    """Send to all the ledger does not rule out; Ctrl-C or `stop` ends after the batch in flight."""
    return _Run(prepared, ledger, provider_factory, settings, on_progress, stop, total).execute()


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


class _Stopped(Exception):
    """A worker saw the send being stopped before its batch went out."""


class _Run:
    def __init__(self, prepared, ledger, factory, settings, on_progress, stop, total) -> None:
        self.prepared = prepared
        self.ledger = ledger
        self.factory = factory
        self.settings = settings
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.summary = Summary(Plan(), dry_run=settings.dry_run, expected=total)
        from newsletter.subscribers import SendableStats

        self.dropped = SendableStats()  # filled by the pass over the list in _batches
        self.rate = RateLimiter(settings.rate)
        self.lock = threading.Lock()
        self.batch_numbers = itertools.count(1)
        self.consecutive_failures = 0
        self.fatal: BaseException | None = None
        self.started = time.monotonic()
        self.run_id = 0
        self.worker_numbers = itertools.count(1)

    # The producer: the calling thread -----------------------------------------------

    def execute(self) -> Summary:
        prepared, ledger, summary = self.prepared, self.ledger, self.summary
        if self.settings.dry_run:
            with self.factory():  # its check() runs: settings and secrets are right
                pass
            with self._read_ahead() as built:
                for batch in self._batches(built):
                    summary.sent += len(batch)
                    self._progress()
            return self._finish(None)
        # The list is read in a process forked before any thread of ours starts.
        with ledger.claim(prepared.slug), self._read_ahead() as built:
            self.run_id = ledger.start_run(prepared.slug, prepared.list_name, prepared.provider)
            if not prepared.is_test:
                ledger.clear_invalid(prepared.slug, prepared.list_name)
            work: queue.Queue = queue.Queue(maxsize=self.settings.workers)
            threads = [
                threading.Thread(target=self._worker, args=(work,), daemon=True, name=f"send-{i}")
                for i in range(self.settings.workers)
            ]
            for thread in threads:
                thread.start()
            groups = {}
            if self.settings.resend_unknown and get_provider_class(prepared.provider).idempotent:
                groups = ledger.unknown_batches(prepared.slug)  # sent as before: same keys
            try:
                for batch in regroup(self._batches(built), groups):
                    if not self._put(work, batch):
                        break
                for _ in threads:
                    self._put(work, None)
                self._join(threads)
            except KeyboardInterrupt:
                summary.interrupted = True
                self.stop.set()
                self._join(threads)  # a second Ctrl-C leaves at once; in-flight rows stay
            except BaseException:
                # Reading the list failed (a bad row, the reading process died): the batches
                # with the provider are answered and recorded before the error goes up.
                self.stop.set()
                self._join(threads)
                ledger.finish_run(self.run_id, "error")
                raise
            if self.stop.is_set() and not summary.stopped and not self.fatal:
                summary.interrupted = True
            return self._finish(self.fatal)

    def _read_ahead(self) -> readahead.ReadAhead:
        # A dry run has no provider threads to make room for: reading in-thread is quicker.
        ahead = self.settings.read_ahead and not self.settings.dry_run
        return readahead.ReadAhead(self.prepared, self.dropped, ahead=ahead)

    def _batches(self, built: readahead.ReadAhead) -> Iterator[list[OutgoingMessage]]:
        """Messages for every recipient the ledger does not rule out, grouped; merge failures
        recorded."""
        prepared, settings, plan = self.prepared, self.settings, self.summary.plan
        batch, unsent, skipped = [], [], []
        for chunk in built:
            keys = [key for key, _, _ in chunk]
            blocked = self.ledger.blocked(prepared.slug, keys, settings.resend_unknown)
            for key, email, message in chunk:
                state = blocked.get(key)
                if state is None and type(message) is Skipped:
                    plan.invalid += 1
                    skipped.append(message)
                    continue
                if not _admit(plan, state, settings.limit):
                    continue
                if isinstance(message, str):  # the reason its message could not be built
                    unsent.append((key, email, message))
                else:
                    batch.append(message)
                if len(batch) >= settings.batch_size or len(unsent) >= readahead.CHUNK:
                    self._record_unsent(unsent)
                    unsent = []
                if len(batch) >= settings.batch_size:
                    yield batch
                    batch = []
            self._record_skipped(skipped)
            skipped = []
        self._record_unsent(unsent)
        if batch:
            yield batch

    def _record_skipped(self, skipped: list[Skipped]) -> None:
        if not skipped:
            return
        if not self.settings.dry_run:
            self.ledger.record_invalid(
                self.prepared.slug,
                self.prepared.list_name,
                self.run_id,
                [(s.key, s.email, f"{s.where}: {s.reason}") for s in skipped],
            )
        with self.lock:
            listed = self.summary.skipped
            listed += [(s.where, s.reason) for s in skipped[: max(0, LISTED - len(listed))]]

    def _record_unsent(self, unsent: list[tuple[str, str, str]]) -> None:
        if not unsent:
            return
        if not self.settings.dry_run:
            self.ledger.record_unsent(
                self.prepared.slug, self.prepared.list_name, self.run_id, unsent
            )
        with self.lock:
            self.summary.failed += len(unsent)
            for _, email, reason in unsent[: max(0, LISTED - len(self.summary.failures))]:
                self.summary.failures.append((email, reason))

    def _put(self, work: queue.Queue, item) -> bool:
        while not self.stop.is_set():
            try:
                work.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _join(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)

    def _finish(self, fatal: BaseException | None) -> Summary:
        summary = self.summary
        if not self.stop.is_set():  # the whole list was read: the counts are complete
            _count_left_out(self.prepared, summary.plan, self.dropped)
        if self.run_id:
            outcome = "interrupted" if summary.interrupted else summary.exit_code.name.lower()
            self.ledger.finish_run(self.run_id, outcome)
        if fatal is not None and not isinstance(fatal, ProviderError):
            # A setting or file problem, or a bug: the ledger already holds the batch
            # in flight as unknown (or as not sent), so the error can go up as it is.
            raise fatal
        return summary

    # Workers --------------------------------------------------------------------------

    def _worker(self, work: queue.Queue) -> None:
        journal = None
        try:
            with self.factory() as provider:
                if provider.reports_handovers and self.ledger.path is not None:
                    journal = Journal(
                        self.ledger.path.parent,
                        self.prepared.slug,
                        self.run_id,
                        next(self.worker_numbers),
                    )
                while not self.stop.is_set():
                    try:
                        batch = work.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if batch is None:
                        return
                    self._deliver(provider, batch, journal)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._halt(exc)
        finally:
            if journal is not None:
                journal.close()

    def _halt(self, exc: BaseException) -> None:
        with self.lock:
            if self.fatal is None:
                self.fatal = exc
                if isinstance(exc, ProviderError):
                    self.summary.stopped = str(exc)
        self.stop.set()

    def _deliver(
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
            if self.stop.is_set() or not self.rate.acquire(len(pending), self.stop):
                raise _Stopped
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
                self.ledger.record(
                    slug, [Outcome(k, states.RETRY, None, str(exc)) for k in pending]
                )
                with self.lock:
                    self.summary.retry += len(pending)
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
            retry=retry_if_result(lambda _: bool(pending) and not self.stop.is_set()),
            stop=lambda _: failures >= settings.max_attempts,
            wait=wait,
            sleep=self.stop.wait,
            before_sleep=set_aside,
            retry_error_callback=lambda _: None,
            reraise=True,
        )
        with contextlib.suppress(_Stopped):
            retrying(attempt)
        if pending:
            self.ledger.record(slug, [outcome_of(last[k]) for k in pending if k in last])
            with self.lock:
                self.summary.retry += sum(1 for k in pending if k in last)
            self._progress()
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
            from newsletter.subscribers import add_suppressions

            add_suppressions(self.prepared.config.subscribers_dir, bounced)
        with self.lock:
            summary = self.summary
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
                if self.consecutive_failures >= limit and self.fatal is None:
                    self.fatal = ProviderError(
                        f"stopped after {limit} failed attempts in a row; "
                        f"last: {reason or 'no reason given'}"
                    )
                    summary.stopped = str(self.fatal)
                    self.stop.set()
        if final:
            self._progress()
        return temporary, accepted

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        with self.lock:
            s = self.summary
            done = s.sent + s.failed + s.unknown + s.retry
            total = max(s.expected or 0, s.plan.to_send, done)
            snapshot = Progress(total, done, s.sent, s.failed, time.monotonic() - self.started)
            self.on_progress(snapshot)


# Status ---------------------------------------------------------------------------------


def issue_slug(issue: str) -> str:
    """The ledger name of an issue given as a file path or as its slug."""
    from newsletter.issue import slugify

    path = Path(issue)
    if path.suffix == ".md" or path.exists():
        return slugify(path.stem)
    return issue
