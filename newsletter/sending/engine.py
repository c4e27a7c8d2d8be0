"""The send loop: batches from the read-ahead, checked against the ledger, to worker threads.

Exactly once: a recipient is written `in_flight` before the provider sees their message and
becomes `sent` only on the provider's acceptance. A batch is marked in flight as a whole
and its outcomes recorded together; providers that report their steps (SMTP, SendGrid) are
followed step by step in each worker's journal (handover.py, journal.py), so a crash leaves
only the step under way unknown. Temporary failures are retried (delivery.py: tenacity,
exponential backoff with jitter, Retry-After honoured); throttling alone never fails a send.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import sys
import threading
from collections.abc import Callable, Iterator

from newsletter.errors import ProviderError
from newsletter.message import OutgoingMessage
from newsletter.providers import Provider, get_provider_class
from newsletter.sending import readahead
from newsletter.sending.delivery import Delivery
from newsletter.sending.journal import Journal
from newsletter.sending.ledger import Ledger
from newsletter.sending.options import Settings
from newsletter.sending.planning import Plan, admit, count_left_out
from newsletter.sending.prepared import Prepared
from newsletter.sending.regroup import regroup
from newsletter.sending.summary import LISTED, Progress, Summary, Tally
from newsletter.subscribers.sending import Skipped

ProviderFactory = Callable[[], Provider]

# How long a thread that wants the interpreter lock waits before the running thread must
# let go of it. Python's 5 ms suits threads that compute; ours mostly wait for answers, and
# each answer (every SMTP reply, every HTTP response) needs the lock back before it can be
# read: behind a busy thread it would wait 5 ms each time.
SWITCH_INTERVAL = 0.0005


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


class _Run:
    def __init__(self, prepared, ledger, factory, settings, on_progress, stop, total) -> None:
        self.prepared = prepared
        self.ledger = ledger
        self.factory = factory
        self.settings = settings
        self.tally = Tally(
            Summary(Plan(), dry_run=settings.dry_run, expected=total), stop, on_progress
        )
        self.summary = self.tally.summary
        self.stop = self.tally.stop
        from newsletter.subscribers import SendableStats

        self.dropped = SendableStats()  # filled by the pass over the list in _batches
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
                    self.tally.progress()
            return self._finish(None)
        # The list is read in a process forked before any thread of ours starts.
        with ledger.claim(prepared.slug), self._read_ahead() as built, _quick_handoffs():
            segment = prepared.segment.text if prepared.segment else None
            self.run_id = ledger.start_run(
                prepared.slug, prepared.list_name, prepared.provider, segment
            )
            if not prepared.is_test:
                ledger.clear_invalid(prepared.slug, prepared.list_name)
            groups = {}
            if self.settings.resend_unknown and get_provider_class(prepared.provider).idempotent:
                groups = ledger.unknown_batches(prepared.slug)  # sent as before: same keys
            return self._deliver(
                Delivery(prepared, ledger, self.settings, self.tally, self.run_id),
                regroup(self._batches(built), groups),
            )

    def _deliver(self, delivery: Delivery, batches: Iterator[list[OutgoingMessage]]) -> Summary:
        """Hand the batches to the worker threads until they run out or the send stops."""
        summary = self.summary
        work: queue.Queue = queue.Queue(maxsize=self.settings.workers)
        threads = [
            threading.Thread(
                target=self._worker, args=(work, delivery), daemon=True, name=f"send-{i}"
            )
            for i in range(self.settings.workers)
        ]
        for thread in threads:
            thread.start()
        try:
            for batch in batches:
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
            self.ledger.finish_run(self.run_id, "error")
            raise
        if self.stop.is_set() and not summary.stopped and not self.tally.fatal:
            summary.interrupted = True
        return self._finish(self.tally.fatal)

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
                if not admit(plan, state, settings.limit):
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
        with self.tally.lock:
            listed = self.summary.skipped
            listed += [(s.where, s.reason) for s in skipped[: max(0, LISTED - len(listed))]]

    def _record_unsent(self, unsent: list[tuple[str, str, str]]) -> None:
        if not unsent:
            return
        if not self.settings.dry_run:
            self.ledger.record_unsent(
                self.prepared.slug, self.prepared.list_name, self.run_id, unsent
            )
        with self.tally.lock:
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
            count_left_out(self.prepared, summary.plan, self.dropped)
        if self.run_id:
            outcome = "interrupted" if summary.interrupted else summary.exit_code.name.lower()
            self.ledger.finish_run(self.run_id, outcome)
        if fatal is not None and not isinstance(fatal, ProviderError):
            # A setting or file problem, or a bug: the ledger already holds the batch
            # in flight as unknown (or as not sent), so the error can go up as it is.
            raise fatal
        return summary

    # Workers --------------------------------------------------------------------------

    def _journal(self) -> Journal | None:
        """Where a worker notes each step of its batches (a scratch ledger: nowhere)."""
        if self.ledger.path is None:
            return None
        worker = next(self.worker_numbers)
        return Journal(self.ledger.path.parent, self.prepared.slug, self.run_id, worker)

    def _worker(self, work: queue.Queue, delivery: Delivery) -> None:
        journal = None
        try:
            with self.factory() as provider:
                if provider.reports_handovers:
                    journal = self._journal()
                while not self.stop.is_set():
                    try:
                        batch = work.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if batch is None:
                        return
                    delivery.deliver(provider, batch, journal)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.tally.halt(exc)
        finally:
            if journal is not None:
                journal.close()


@contextlib.contextmanager
def _quick_handoffs() -> Iterator[None]:
    """SWITCH_INTERVAL while the send runs; Python's own interval again after."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
