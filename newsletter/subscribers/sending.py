"""Who a send goes to: the list streamed, minus whoever must not be mailed, bad rows set aside.

Also the one list change the opt-out journal needs: many addresses downgraded in one write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.subscribers.csvfile import checked_rows, status_of, to_subscriber
from newsletter.subscribers.model import (
    HASH_PREFIX,
    STATUS_RANK,
    STATUSES,
    Problem,
    Subscriber,
    display,
    email_key,
    existing_list,
    suppression_hash,
    utc_now,
)
from newsletter.subscribers.seen import Seen
from newsletter.subscribers.store import rewrite
from newsletter.subscribers.suppressions import load_suppressed
from newsletter.subscribers.withdrawn import Withdrawn


@dataclass
class SendableStats:
    """The rows `sendable` left out, and why; counted as it streams, complete once it ends."""

    not_subscribed: dict[str, int] = field(
        default_factory=lambda: {status: 0 for status in STATUSES if status != "subscribed"}
    )
    suppressed: int = 0  # subscribed, but the address (or its erased hash) is suppressed
    repeated: int = 0  # subscribed and not suppressed, but an earlier row has the address
    outside_segment: int = 0  # mailable, but the send's segment does not match it


@dataclass(frozen=True)
class Skipped:
    """A row that cannot be mailed as written: where it is and what is wrong with it."""

    key: str  # the address's key when it has a valid one, else "invalid:<file>:<line>"
    email: str  # as written (may be empty)
    where: str  # file:line
    reason: str


class Sorting:
    """Which rows a send leaves out, row by row, counting why (both stores use it)."""

    def __init__(
        self,
        suppressed: set[str],
        stats: SendableStats,
        withdrawn: Withdrawn | None,
        *,
        unique: bool = False,
    ) -> None:
        self.suppressed = suppressed
        self.hashed = any(key.startswith(HASH_PREFIX) for key in suppressed)  # else skip hashing
        self.stats = stats
        self.withdrawn = withdrawn or Withdrawn()
        self.seen = Seen()  # exact, in under half the memory of a set: lists run to millions
        self.unique = unique  # rows come one per key (PostgreSQL's primary key): nothing to hold

    def left_out(self, key: str, status: str) -> bool:
        """Not subscribed, suppressed, or opted out where the list does not show it yet."""
        other, gone = self.stats.not_subscribed, self.withdrawn.statuses
        if status != "subscribed" and status in other:
            other[status] += 1
        elif key in self.suppressed or (self.hashed and suppression_hash(key) in self.suppressed):
            self.stats.suppressed += 1
        elif gone and key in gone:
            other[gone[key]] += 1
        elif self.withdrawn.ids and key and self.withdrawn.address_id(key) in self.withdrawn.ids:
            other["unsubscribed"] += 1
        else:
            return False
        return True

    def repeated(self, key: str) -> bool:
        """An earlier row had this address (the first one wins)."""
        if self.unique or self.seen.add(key):
            return False
        self.stats.repeated += 1
        return True


def sendable(
    subscribers_dir: Path,
    list_name: str,
    stats: SendableStats | None = None,
    withdrawn: Withdrawn | None = None,
    *,
    skip_bad_rows: bool = False,
) -> Iterator[Subscriber | Skipped]:
    """Subscribed rows minus suppressed addresses and repeated keys (the first one wins).

    A bad row raises, naming file and line; with `skip_bad_rows` it is yielded as a Skipped
    instead (an address that may be mailed is never yielded twice, whichever row holds it).
    """
    path = existing_list(subscribers_dir, list_name)
    sorting = Sorting(load_suppressed(subscribers_dir), stats or SendableStats(), withdrawn)
    problems: list[Problem] | None = [] if skip_bad_rows else None
    where = display(path)
    for cols, line, values, key, status in checked_rows(path, problems):
        bad = None
        if problems:  # this row's problems, and rows before it that could not be read at all
            yield from _unreadable(problems, line, where)
            if problems:
                bad = "; ".join(p.message for p in problems)
                problems.clear()
        if sorting.left_out(key, status):
            continue
        if not key:
            yield Skipped(
                f"invalid:{where}:{line}",
                values[cols.pos["email"]].strip(),
                f"{where}:{line}",
                bad or "",
            )
        elif sorting.repeated(key):
            continue
        elif bad:
            yield Skipped(key, values[cols.pos["email"]].strip(), f"{where}:{line}", bad)
        else:
            yield to_subscriber(cols, line, values, key)
    if problems:
        yield from _unreadable(problems, None, where)


def _unreadable(problems: list[Problem], line: int | None, where: str) -> Iterator[Skipped]:
    """Skipped rows for the problems of lines other than `line`, which stay in `problems`."""
    own = [p for p in problems if p.line == line]
    for p in problems:
        if p.line != line:
            at = f"{where}:{p.line}"
            yield Skipped(f"invalid:{at}", "", at, p.message)
    problems[:] = own


def downgrade_many(
    subscribers_dir: Path, list_name: str, wanted: Callable[[], Mapping[str, tuple[str, str]]]
) -> int:
    """Move the rows of each key in `wanted()` ({key: (status, source)}) to that status when it
    is less mailable, in one locked, atomic write; `wanted` is asked with the lock held, so it
    sees what changed while waiting for it. How many rows changed."""
    path = existing_list(subscribers_dir, list_name)
    stamp = utc_now()
    changed = 0

    def edit(cols, rows):
        nonlocal changed
        targets = dict(wanted())
        locals_ = {key.rpartition("@")[0] for key in targets}
        e, s, u, src = (cols.index(c) for c in ("email", "status", "updated_at", "source"))
        for _, values in rows:
            cell = values[e].strip()
            # Most rows are told apart by their local part without normalising the address.
            if targets and not (cell.isascii() and cell.rpartition("@")[0].lower() not in locals_):
                target = targets.get(email_key(cell))
                if target and STATUS_RANK.get(status_of(values[s]), 0) < STATUS_RANK[target[0]]:
                    values[s], values[u] = target[0], stamp
                    if target[1]:
                        values[src] = target[1]
                    changed += 1
            yield values
        return changed > 0

    rewrite(path, ("status", "updated_at", "source"), edit, create=False)
    return changed
