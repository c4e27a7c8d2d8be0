"""The ledger kept step by step while a provider hands one batch over.

A provider with `reports_handovers` tells its Handover about each step of a batch (a
message for SMTP, a request for SendGrid): the step is written in flight before it goes
and its outcome as soon as it is answered. A crash then leaves in flight only the step
under way, not the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter import ledger as states
from newsletter.ledger import Ledger
from newsletter.message import OutgoingMessage
from newsletter.providers.base import Result, Status

_STATE_OF = {
    Status.ACCEPTED: states.SENT,
    Status.REJECTED: states.FAILED,
    Status.TEMPORARY: states.RETRY,
    Status.UNKNOWN: states.UNKNOWN,
}


def outcome_of(result: Result) -> tuple[str, str, str | None, str | None]:
    """The ledger's Outcome, as the plain tuple it is (quicker to make by the thousand)."""
    return result.key, _STATE_OF[result.status], result.provider_id, result.reason or None


class StepWriter:
    """Writes the steps of one send's batches to the ledger, one statement each.

    (Letting workers share a statement, group commit, or writing from a thread of its
    own while the SMTP envelope goes out, measured no faster: see README, Benchmarks.)
    """

    def __init__(self, ledger: Ledger, prepared, run_id: int) -> None:
        self.ledger = ledger
        self.slug = prepared.slug
        self.list_name = prepared.list_name
        self.run_id = run_id

    def write(self, rows: list[tuple]) -> None:
        """Store (key, email, state, provider_id, error, batch) rows; return once they are."""
        self.ledger.write_steps(self.slug, self.list_name, self.run_id, rows)


class LedgerHandover:
    """A providers.Handover that writes each step of one batch to the ledger as it happens.

    An answer is written together with the next step's in-flight mark, in one write:
    until then its row stays in flight, so at any moment at most one step per worker is.
    """

    def __init__(self, writer: StepWriter, batch: int) -> None:
        self.writer = writer
        self.batch = batch
        self.emails: dict[str, str] = {}  # every key handed over: its address
        self.open: dict[str, None] = {}  # keys in flight with no answer yet
        self.unsaved: list[Result] = []  # answers not in the ledger yet
        self.answers: dict[str, Result] = {}  # keys answered, their outcome in the ledger

    def before(self, messages: Sequence[OutgoingMessage]) -> None:
        pairs = [(m.key, m.to_email) for m in messages]
        self.emails.update(pairs)
        starting = [(key, email, states.IN_FLIGHT, None, None, self.batch) for key, email in pairs]
        self.writer.write([*self._unsaved_rows(), *starting])
        self._saved()
        self.open.update(dict.fromkeys(key for key, _ in pairs))

    def after(self, results: Sequence[Result]) -> None:
        self.unsaved += results
        for result in results:
            self.open.pop(result.key, None)

    def flush(self) -> None:
        """Write the answers not written yet (the batch is over, or broke off)."""
        if self.unsaved:
            self.writer.write(self._unsaved_rows())
            self._saved()

    def recorded(
        self, pending: dict[str, OutgoingMessage], results: Sequence[Result]
    ) -> dict[str, Result]:
        """The answers in the ledger once the batch returned; a final one it missed is added."""
        self.flush()
        missed = [
            r
            for r in results
            if r.status is not Status.TEMPORARY and r.key not in self.answers and r.key in pending
        ]
        if missed:
            self.before([pending[r.key] for r in missed])
            self.after(missed)
            self.flush()
        return self.answers

    def _unsaved_rows(self) -> list[tuple]:
        rows = []
        for result in self.unsaved:
            key, state, provider_id, error = outcome_of(result)
            rows.append((key, self.emails.get(key, key), state, provider_id, error, self.batch))
        return rows

    def _saved(self) -> None:
        self.answers.update((r.key, r) for r in self.unsaved)
        self.unsaved = []
