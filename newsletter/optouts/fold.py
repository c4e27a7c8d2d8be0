"""Folding the journal into a list file when a command writes that list anyway.

`serve` keeps unsubscribes and provider events in the journal and never rewrites a list for
them (a list of a million rows takes seconds to rewrite; the journal takes a row). Readers see
them at once through `view`; the next command that writes the list (add, remove, import,
forget, ...) moves the rows in the same locked write (`folding`), and the journal's
unsubscribes of that list are marked applied. Provider actions stay pending in the journal
until `apply_pending` has them in the suppression file and every list (a send does that).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.optouts.journal import Journal, withdrawn

log = logging.getLogger("newsletter.optouts")


def view(config: Config, list_name: str) -> subs.Withdrawn | None:
    """What reading this list must show as opted out that its file may not show yet."""
    return withdrawn(config.state_dir, list_name)


@contextmanager
def folding(config: Config) -> Iterator[None]:
    """Within the block, each write of one of the workspace's lists folds the journal in."""
    with subs.folding(lambda path: _fold(config, path)):
        yield


def _fold(config: Config, path: Path) -> subs.Fold | None:
    folder = config.subscribers_dir
    if path.parent != folder or path == subs.suppressions_path(folder):
        return None
    list_name = path.stem
    try:
        journal = Journal.existing(config.state_dir)
        if journal is None:
            return None
        with journal:
            keyed = [u.id for u in journal.unsubscribes(list_name, pending=True) if u.key]
        found = withdrawn(config.state_dir, list_name)
    except NewsletterError as exc:  # the write goes on; the journal keeps them for later
        log.warning("opt-outs not folded into %s: %s", list_name, exc)
        return None
    if found is None:
        return None

    def done() -> None:
        try:
            with Journal(config.state_dir) as kept:
                kept.mark_applied("unsubscribes", keyed)
        except NewsletterError as exc:  # still honoured; marked by the next write or send
            log.warning("folded opt-outs of %s not marked applied: %s", list_name, exc)

    return subs.Fold(found, done)
