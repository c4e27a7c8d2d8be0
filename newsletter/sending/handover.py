"""Following a provider as it hands one batch over, step by step, in the worker's journal.

A provider with `reports_handovers` tells its Handover about each step of a batch (a
message for SMTP, a request for SendGrid): what is about to go, then each answer. The
ledger has the whole batch in flight meanwhile; the journal (journal.py) says which of it
went and what came back, so a crash leaves in flight only the step under way.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.message import OutgoingMessage
from newsletter.providers.base import Result, Status
from newsletter.sending.journal import GO, Journal
from newsletter.sending.ledger import FAILED, RETRY, SENT, UNKNOWN

_STATE_OF = {
    Status.ACCEPTED: SENT,
    Status.REJECTED: FAILED,
    Status.TEMPORARY: RETRY,
    Status.UNKNOWN: UNKNOWN,
}


def outcome_of(result: Result) -> tuple[str, str, str | None, str | None]:
    """The ledger's Outcome, as the plain tuple it is (quicker to make by the thousand)."""
    return result.key, _STATE_OF[result.status], result.provider_id, result.reason or None


class JournalHandover:
    """A providers.Handover that journals each step of one attempt at a batch.

    An answer is written together with the next step, in one write: until then the journal
    has its message handed over and unanswered, so at any moment at most one step per
    worker is. With no journal (a scratch ledger) it only keeps count, for `broken`.
    """

    def __init__(self, journal: Journal | None, batch: int) -> None:
        self.journal = journal
        self.batch = batch
        self.open: dict[str, None] = {}  # keys handed over with no answer yet
        self.answers: dict[str, Result] = {}  # keys answered
        # Answers not in the journal yet, as they came: made into lines only when the next
        # step writes them (a SendGrid batch is one step: its 1,000 answers never are).
        self.unsaved: list[Result] = []

    def opening(self, messages: Sequence[OutgoingMessage]) -> None:
        """Note the attempt's messages as not handed over yet: call before the ledger marks
        them in flight (an answer of an earlier attempt no longer holds)."""
        if self.journal is not None:
            self.journal.append([["open", self.batch, *[m.key for m in messages]]])

    def before(self, messages: Sequence[OutgoingMessage]) -> None:
        keys = [m.key for m in messages]
        if self.journal is not None:
            done = [["done", *outcome_of(result)] for result in self.unsaved]
            self.journal.append([*done, [GO, self.batch, *keys]])
        self.unsaved = []
        self.open.update(dict.fromkeys(keys))

    def after(self, results: Sequence[Result]) -> None:
        for result in results:
            self.open.pop(result.key, None)
            self.answers[result.key] = result
        if self.journal is not None:
            self.unsaved += results

    def never_handed(self, keys: Sequence[str]) -> list[str]:
        """Which of keys never went to the provider in this attempt."""
        return [k for k in keys if k not in self.open and k not in self.answers]
