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
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.errors import NewsletterError, SubscriberError
from newsletter.files import make_folder
from newsletter.tokens import address_id

JOURNAL_NAME = "optouts.sqlite3"
SCHEMA_VERSION = 1
RANK = {"unsubscribed": 1, "bounced": 2, "complained": 3}

_SCHEMA = """
CREATE TABLE unsubscribes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list TEXT NOT NULL,
    address_id TEXT NOT NULL,
    key TEXT,  -- the row's key, once the list has been read far enough to find it
    via TEXT NOT NULL,
    at TEXT NOT NULL,
    applied_at TEXT,
    UNIQUE (list, address_id)
);
CREATE TABLE actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    list TEXT,  -- NULL: every list
    reason TEXT,  -- the suppression it calls for; NULL: the lists only
    at TEXT NOT NULL,
    applied_at TEXT
);
CREATE INDEX actions_key ON actions (key);
"""

log = logging.getLogger("newsletter.optouts")


class JournalError(NewsletterError):
    """The opt-out journal cannot be opened or written."""


@dataclass(frozen=True)
class Unsubscribe:
    id: int
    list_name: str
    address_id: str
    key: str | None
    via: str
    at: str
    applied_at: str | None


@dataclass(frozen=True)
class Action:
    id: int
    key: str
    status: str  # unsubscribed, bounced or complained
    list_name: str | None  # None: every list
    reason: str | None  # suppression reason, or None to change the lists only
    at: str
    applied_at: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Journal:
    """One SQLite file in the workspace's state folder, one connection shared by threads."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_NAME
        self._lock = threading.RLock()
        try:
            make_folder(state_dir, private=True)
            # It holds address keys: readable by the owner only (SQLite's -wal and -shm
            # files take the database file's mode).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an answered unsubscribe is on disk
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open: {exc}", where=str(self.path)) from None
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"schema version {version} is newer than this program's: upgrade newsletter",
                    where=str(self.path),
                )
            if version == 0:
                db.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )

    @classmethod
    def existing(cls, state_dir: Path) -> Journal | None:
        """The journal if one was ever written; readers have nothing to honour otherwise."""
        return cls(state_dir) if (state_dir / JOURNAL_NAME).is_file() else None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise JournalError(f"cannot write: {exc}", where=str(self.path)) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Unsubscribes ----------------------------------------------------------------------

    def unsubscribe(self, list_name: str, ident: str, key: str | None, via: str) -> None:
        """Keep an unsubscribe (again: it is applied again, which changes nothing twice)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO unsubscribes (list, address_id, key, via, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (list, address_id) DO UPDATE SET "
                "key = coalesce(excluded.key, key), via = excluded.via, at = excluded.at, "
                "applied_at = NULL",
                (list_name, ident, key, via, _now()),
            )

    def cancel(self, list_name: str, ident: str) -> Unsubscribe | None:
        """Take an unsubscribe back (they subscribed again); the entry it was, if any."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = self._unsubscribes(db, "list = ? AND address_id = ?", (list_name, ident))
            db.execute(
                "DELETE FROM unsubscribes WHERE list = ? AND address_id = ?", (list_name, ident)
            )
            db.execute("COMMIT")
        return rows[0] if rows else None

    def unsubscribes(
        self, list_name: str | None = None, *, pending: bool = False
    ) -> list[Unsubscribe]:
        where, params = ("list = ?", (list_name,)) if list_name is not None else ("1", ())
        if pending:
            where += " AND applied_at IS NULL"
        with self._connect() as db:
            return self._unsubscribes(db, where, params)

    @staticmethod
    def _unsubscribes(db, where: str, params: tuple) -> list[Unsubscribe]:
        rows = db.execute(
            "SELECT id, list, address_id, key, via, at, applied_at FROM unsubscribes "
            f"WHERE {where} ORDER BY id",
            params,
        ).fetchall()
        return [Unsubscribe(*row) for row in rows]

    def resolve(self, list_name: str, keys: dict[str, str]) -> None:
        """Note the key of each address id found in the list."""
        with self._connect() as db:
            db.executemany(
                "UPDATE unsubscribes SET key = ? WHERE list = ? AND address_id = ? AND key IS NULL",
                [(key, list_name, ident) for ident, key in keys.items()],
            )

    def mark_applied(self, table: str, ids: Iterable[int]) -> None:
        assert table in ("unsubscribes", "actions")
        stamp = _now()
        with self._connect() as db:
            db.executemany(
                f"UPDATE {table} SET applied_at = ? WHERE id = ? AND applied_at IS NULL",
                [(stamp, i) for i in ids],
            )

    # Provider actions ----------------------------------------------------------------

    def record_actions(self, actions: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        """Keep (key, status, list or None for all, suppression reason or None)."""
        stamp = _now()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO actions (key, status, list, reason, at) VALUES (?,?,?,?,?)",
                [(*action, stamp) for action in actions],
            )
            db.execute("COMMIT")

    def actions(self, *, pending: bool = False) -> list[Action]:
        where = "applied_at IS NULL" if pending else "1"
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, key, status, list, reason, at, applied_at FROM actions "
                f"WHERE {where} ORDER BY id"
            ).fetchall()
        return [Action(*row) for row in rows]

    # For sends and erasure ------------------------------------------------------------

    def withdrawn(self, list_name: str) -> tuple[dict[str, str], set[str]]:
        """({key: status} not to be mailed from this list, address ids not matched to a key)."""
        statuses: dict[str, str] = {}
        ids: set[str] = set()
        for entry in self.unsubscribes(list_name):
            if entry.key:
                statuses[entry.key] = "unsubscribed"
            elif entry.applied_at is None:
                ids.add(entry.address_id)
        for action in self.actions(pending=True):
            if action.list_name in (None, list_name):
                current = statuses.get(action.key)
                if current is None or RANK[action.status] > RANK[current]:
                    statuses[action.key] = action.status
        return statuses, ids

    def forget(self, entries: Iterable[tuple[str, str]], key: str | None = None) -> int:
        """Delete these (list, address id) unsubscribes and, given a key, every unsubscribe
        and provider action of that key; how many entries went."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            gone = 0
            for list_name, ident in entries:
                gone += db.execute(
                    "DELETE FROM unsubscribes WHERE list = ? AND address_id = ?", (list_name, ident)
                ).rowcount
            if key is not None:
                gone += db.execute("DELETE FROM unsubscribes WHERE key = ?", (key,)).rowcount
                gone += db.execute("DELETE FROM actions WHERE key = ?", (key,)).rowcount
            db.execute("COMMIT")
        return gone


# Reading and applying ----------------------------------------------------------------------


def withdrawn(state_dir: Path, list_name: str, secret: bytes) -> subs.Withdrawn | None:
    """What a send of this list must leave out that the list may not show yet."""
    journal = Journal.existing(state_dir)
    if journal is None:
        return None
    with journal:
        statuses, ids = journal.withdrawn(list_name)
    if not statuses and not ids:
        return None
    return subs.Withdrawn(statuses, frozenset(ids), partial(address_id, secret, list_name))


def unsubscribe_pending(state_dir: Path, list_name: str, ident: str) -> bool:
    """Whether an unsubscribe of this address id is kept but not applied to the list yet."""
    journal = Journal.existing(state_dir)
    if journal is None:
        return False
    with journal:
        return any(u.address_id == ident for u in journal.unsubscribes(list_name, pending=True))


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


def _resolve_ids(
    folder: Path, secret: bytes, list_name: str, ids: set[str]
) -> tuple[dict[str, str], bool]:
    """({address id: key} of the rows that have these ids, whether every row could be read)."""
    path = subs.list_path(folder, list_name)
    found: dict[str, str] = {}
    problems: list[subs.Problem] = []
    try:
        for row in subs.iter_rows(path, problems):
            if row.email:
                key = row.key
                ident = address_id(secret, list_name, key)
                if ident in ids:
                    found.setdefault(ident, key)
    except SubscriberError:
        return found, False
    return found, not problems


def _apply_actions(folder: Path, journal: Journal) -> tuple[int, int]:
    actions = journal.actions(pending=True)
    if not actions:
        return 0, 0
    done = {a.id for a in actions}
    suppress = []
    for action in actions:
        if action.reason:
            try:
                subs.normalize_email(action.key)
            except subs.InvalidEmail:
                continue  # cannot be mailed anyway; the event is still recorded
            suppress.append((action.key, action.reason))
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


def clear(state_dir: Path, key: str, list_name: str | None = None) -> int:
    """Take back the opt-outs of an address: on one list (they asked to be subscribed again),
    or everywhere with its provider actions too (`forget`). How many entries went."""
    from newsletter.tokens import load_secret

    journal = Journal.existing(state_dir)
    if journal is None:
        return 0
    secret = load_secret(state_dir)
    with journal:
        entries = [
            (u.list_name, u.address_id)
            for u in journal.unsubscribes(list_name)
            if u.key == key or u.address_id == address_id(secret, u.list_name, key)
        ]
        return journal.forget(entries, key if list_name is None else None)
