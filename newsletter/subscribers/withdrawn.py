"""Opt-outs kept outside the list file (the opt-out journal), seen through when rows are read.

`serve` never rewrites a list for an unsubscribe or a provider event: it keeps them in the
journal, which costs the same for ten rows or ten million. Everything that reads a list for
what it says (sending, count, list, export) passes a Withdrawn, which moves each row it names
to its less mailable status; the next command that writes the list folds them into the file
under the list's lock (`folding`, used by `store.rewrite`). This module knows nothing of where
they are kept: optouts builds the Withdrawn and sets the fold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from newsletter.subscribers.model import STATUS_RANK, email_key


@dataclass(frozen=True)
class Withdrawn:
    """Opt-outs recorded elsewhere (the journal) that the list rows may not show yet."""

    statuses: Mapping[str, str] = field(default_factory=dict)  # key -> status it moves to
    ids: frozenset[str] = frozenset()  # token address ids not matched to a row yet
    address_id: Callable[[str], str] | None = None  # key -> its address id in this list
    sources: Mapping[str, str] = field(default_factory=dict)  # key or id -> source when folded

    def __bool__(self) -> bool:
        return bool(self.statuses or self.ids)

    @cached_property
    def _locals(self) -> frozenset[str]:
        return frozenset(key.rpartition("@")[0] for key in self.statuses)

    def change(self, cell: str, current: str) -> tuple[str, str] | None:
        """(status, source) the row with this email cell and status moves to, or None."""
        cell = cell.strip()
        # Most rows are told apart by their local part without normalising the address.
        if not self.ids and cell.isascii() and cell.rpartition("@")[0].lower() not in self._locals:
            return None
        key = email_key(cell)
        if not key:
            return None
        target = self.statuses.get(key)
        source = self.sources.get(key, "")
        if target is None and self.ids and self.address_id is not None:
            ident = self.address_id(key)
            if ident in self.ids:
                target, source = "unsubscribed", self.sources.get(ident, "")
        if target is None or STATUS_RANK.get(current, 0) >= STATUS_RANK[target]:
            return None
        return target, source


@dataclass
class Fold:
    """What a write of one list folds in, and what to call once the new file is in place."""

    withdrawn: Withdrawn
    done: Callable[[], None] = lambda: None
    changed: int = 0


# Set by whoever knows where opt-outs are kept (optouts.folding), asked by store.rewrite with
# the list's lock held: a list path -> its Fold, or None.
FoldSource = Callable[[Path], Fold | None]
_FOLD: ContextVar[FoldSource | None] = ContextVar("newsletter_fold", default=None)


@contextmanager
def folding(source: FoldSource) -> Iterator[None]:
    """Within the block, every list write folds in what `source` says is withdrawn."""
    token = _FOLD.set(source)
    try:
        yield
    finally:
        _FOLD.reset(token)


def fold_for(path: Path) -> Fold | None:
    source = _FOLD.get()
    return source(path) if source is not None else None
