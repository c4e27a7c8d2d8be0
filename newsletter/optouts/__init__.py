"""The opt-out journal: unsubscribes and provider suppressions, kept before any list changes.

An unsubscribe link carries (list, address id), signed, so it is checked without the list.
The request is kept here first (SQLite in the state folder, fsynced on commit), then applied
to the list row when the list can be written: by `serve` right after answering, by the next
webhook delivery, or by the next send. A list that cannot be read or written (a malformed
row, a lock held too long) therefore never loses an unsubscribe, and every send honours the
journal whether the list shows it yet or not. An unsubscribe stays in the journal once
applied, so a list file replaced by an older copy still does not mail them; it goes on
resubscribe, `subscribers add --resubscribe` and `subscribers forget`.

Provider events (bounces, spam reports) arriving by webhook are kept the same way, by address
key, until the suppression file and the lists have them; from then on those files decide.

`journal` is the store and what it withholds from a send; `apply` changes the files.
"""

from __future__ import annotations

from newsletter.optouts.apply import (
    Resolver,
    address_ids,
    apply_pending,
    catch_up,
    suppress_pending,
)
from newsletter.optouts.fold import folding, view
from newsletter.optouts.journal import (
    JOURNAL_NAME,
    Action,
    Journal,
    JournalError,
    Unsubscribe,
    clear,
    unsubscribe_pending,
    withdrawn,
)

__all__ = [
    "JOURNAL_NAME",
    "Action",
    "Journal",
    "JournalError",
    "Resolver",
    "Unsubscribe",
    "address_ids",
    "apply_pending",
    "catch_up",
    "clear",
    "folding",
    "suppress_pending",
    "unsubscribe_pending",
    "view",
    "withdrawn",
]
