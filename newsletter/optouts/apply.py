"""Applying the opt-out journal to the lists and the suppression file, where they can be written.

A send applies it before it starts; `serve` never rewrites a list (it adds provider
suppressions to the suppression file only: suppress_pending), and other commands fold the
journal into the lists they write anyway (optouts.fold).
What cannot be applied (a malformed row, a lock held too long) stays pending; sends honour it
meanwhile (journal.withdrawn).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.errors import SubscriberError
from newsletter.optouts.journal import RANK, Action, Journal
from newsletter.tokens import address_id

log = logging.getLogger("newsletter.optouts")


def catch_up(config: Config, secret: bytes) -> None:
    """Before a send: apply what the journal holds, where the files can be written now."""
    journal = Journal.existing(config.state_dir)
    if journal is not None:
        with journal:
            apply_pending(config, secret, journal)


Resolver = Callable[[str, set[str]], tuple[dict[str, str], bool]]


def apply_pending(
    config: Config, secret: bytes, journal: Journal, resolve: Resolver | None = None
) -> tuple[int, int]:
    """Apply pending unsubscribes and provider actions to the files that can be written;
    the rest stays pending. (list rows changed, suppressions added).

    `resolve(list, ids)` finds the keys of address ids ({id: key}, whether the whole list was
    read); by default the list is read for it (`serve` has them indexed already).
    """
    folder = config.subscribers_dir
    if resolve is None:
        resolve = partial(_resolve_ids, folder, secret)
    rows = 0
    for list_name in sorted({u.list_name for u in journal.unsubscribes(pending=True)}):
        try:
            rows += _apply_unsubscribes(folder, list_name, journal, resolve)
        except SubscriberError as exc:
            log.warning("unsubscribes kept, not applied to list %s yet: %s", list_name, exc)
    changed, suppressed = _apply_actions(folder, journal)
    return rows + changed, suppressed


def _apply_unsubscribes(folder: Path, list_name: str, journal: Journal, resolve: Resolver) -> int:
    path = subs.list_path(folder, list_name)
    if not path.is_file():  # no list, no row to change; a list put back is still honoured
        journal.mark_applied(
            "unsubscribes", [u.id for u in journal.unsubscribes(list_name, pending=True)]
        )
        return 0
    unresolved = {
        u.address_id: u.id for u in journal.unsubscribes(list_name, pending=True) if not u.key
    }
    if unresolved:
        found, complete = resolve(list_name, set(unresolved))
        journal.resolve(list_name, found)
        if complete:  # every row was read and none has these ids: nothing to change
            journal.mark_applied(
                "unsubscribes", [i for a, i in unresolved.items() if a not in found]
            )
    if not any(u.key for u in journal.unsubscribes(list_name, pending=True)):
        return 0
    applied: list[int] = []

    def wanted() -> dict[str, tuple[str, str]]:
        # Asked with the list's lock held: a resubscribe that came meanwhile is respected.
        applied.clear()
        out = {}
        for entry in journal.unsubscribes(list_name, pending=True):
            if entry.key:
                applied.append(entry.id)
                out[entry.key] = ("unsubscribed", f"web:{entry.via}")
        return out

    changed = subs.downgrade_many(folder, list_name, wanted)
    journal.mark_applied("unsubscribes", applied)
    return changed


def address_ids(
    path: Path, secret: bytes, list_name: str, wanted: set[str] | None = None
) -> tuple[dict[str, str], bool]:
    """({address id: key} of the list's rows (of those with the wanted ids), whether every row
    could be read). Streams the list; a malformed row does not stop it."""
    found: dict[str, str] = {}
    problems: list[subs.Problem] = []
    try:
        for row in subs.iter_rows(path, problems):
            key = row.key
            if key:
                ident = address_id(secret, list_name, key)
                if wanted is None or ident in wanted:
                    found.setdefault(ident, key)
    except SubscriberError:
        return found, False
    return found, not problems


def _resolve_ids(
    folder: Path, secret: bytes, list_name: str, ids: set[str]
) -> tuple[dict[str, str], bool]:
    return address_ids(subs.list_path(folder, list_name), secret, list_name, ids)


def suppress_pending(config: Config, journal: Journal) -> int:
    """Add the suppressions that pending provider actions call for to the suppression file
    (never the lists); how many were new. The actions stay pending until `apply_pending` has
    them in every list too; a suppression file that cannot be written keeps them for later."""
    suppress = _suppressions(journal.actions(pending=True))
    if not suppress:
        return 0
    try:
        return subs.add_suppressions(config.subscribers_dir, suppress)
    except SubscriberError as exc:
        log.warning("provider suppressions kept, not in the suppression file yet: %s", exc)
        return 0


def _suppressions(actions: list[Action]) -> list[tuple[str, str]]:
    suppress = []
    for action in actions:
        if action.reason:
            try:
                subs.normalize_email(action.key)
            except subs.InvalidEmail:
                continue  # cannot be mailed anyway; the event is still recorded
            suppress.append((action.key, action.reason))
    return suppress


def _apply_actions(folder: Path, journal: Journal) -> tuple[int, int]:
    actions = journal.actions(pending=True)
    if not actions:
        return 0, 0
    done = {a.id for a in actions}
    suppress = _suppressions(actions)
    suppressed = changed = 0
    if suppress:
        try:
            suppressed = subs.add_suppressions(folder, suppress)
        except SubscriberError as exc:
            log.warning("provider suppressions kept, not in the suppression file yet: %s", exc)
            done -= {a.id for a in actions if a.reason}
    for list_name in subs.list_names(folder):
        targets: dict[str, tuple[str, str]] = {}
        for action in actions:
            if action.list_name in (None, list_name):
                current = targets.get(action.key)
                if current is None or RANK[action.status] > RANK[current[0]]:
                    targets[action.key] = (action.status, "sendgrid")
        if not targets:
            continue
        try:
            changed += subs.downgrade_many(folder, list_name, lambda t=targets: t)
        except SubscriberError as exc:
            log.warning("provider events kept, not applied to list %s yet: %s", list_name, exc)
            done -= {a.id for a in actions if a.list_name in (None, list_name)}
    journal.mark_applied("actions", done)
    return changed, suppressed
