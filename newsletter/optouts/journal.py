"""The opt-out journal's SQLite file: unsubscribes and provider actions, and what they withhold.

Unsubscribes are kept by (list, address id), the way a signed link names them; provider
actions by address key. An entry stays once applied to the lists (see optouts.apply), so a
list file put back from an older copy still does not mail the address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from newsletter import subscribers as subs
from newsletter.db import Database, GroupCommit
from newsletter.errors import NewsletterError
from newsletter.tokens import address_id, load_secret

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


class Journal(Database):
    """One SQLite file in the workspace's state folder, one connection shared by threads."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(
            state_dir / JOURNAL_NAME,
            _SCHEMA,
            SCHEMA_VERSION,
            JournalError,
            name="the opt-out journal",
            synchronous="FULL",  # an answered unsubscribe is on disk
        )
        self._grouped = GroupCommit(self._keep_unsubscribes)

    @classmethod
    def existing(cls, state_dir: Path) -> Journal | None:
        """The journal if one was ever written; readers have nothing to honour otherwise."""
        return cls(state_dir) if (state_dir / JOURNAL_NAME).is_file() else None

    # Unsubscribes ----------------------------------------------------------------------

    def unsubscribe(self, list_name: str, ident: str, key: str | None, via: str) -> None:
        """Keep an unsubscribe (again: it is applied again, which changes nothing twice);
        returns once it is on disk, committed together with those arriving at the same time."""
        self.unsubscribe_many([(list_name, ident, key)], via)

    def unsubscribe_many(self, entries: list[tuple[str, str, str | None]], via: str) -> None:
        """unsubscribe() of several (list, address id, key) at once, in one commit."""
        at = _now()
        self._grouped.submit_many([(*entry, via, at) for entry in entries])

    def _keep_unsubscribes(self, entries: list[tuple]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO unsubscribes (list, address_id, key, via, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (list, address_id) DO UPDATE SET "
                "key = coalesce(excluded.key, key), via = excluded.via, at = excluded.at, "
                "applied_at = NULL",
                entries,
            )

    def cancel(self, list_name: str, ident: str) -> Unsubscribe | None:
        """Take an unsubscribe back (they subscribed again); the entry it was, if any."""
        with self.transaction() as db:
            rows = self._unsubscribes(db, "list = ? AND address_id = ?", (list_name, ident))
            db.execute(
                "DELETE FROM unsubscribes WHERE list = ? AND address_id = ?", (list_name, ident)
            )
        return rows[0] if rows else None

    def unsubscribes(
        self, list_name: str | None = None, *, pending: bool = False
    ) -> list[Unsubscribe]:
        where, params = ("list = ?", (list_name,)) if list_name is not None else ("1", ())
        if pending:
            where += " AND applied_at IS NULL"
        with self.connect() as db:
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
        with self.connect() as db:
            db.executemany(
                "UPDATE unsubscribes SET key = ? WHERE list = ? AND address_id = ? AND key IS NULL",
                [(key, list_name, ident) for ident, key in keys.items()],
            )

    def mark_applied(self, table: str, ids: Iterable[int]) -> None:
        assert table in ("unsubscribes", "actions")
        stamp = _now()
        with self.connect() as db:
            db.executemany(
                f"UPDATE {table} SET applied_at = ? WHERE id = ? AND applied_at IS NULL",
                [(stamp, i) for i in ids],
            )

    # Provider actions ----------------------------------------------------------------

    def record_actions(self, actions: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        """Keep (key, status, list or None for all, suppression reason or None)."""
        stamp = _now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO actions (key, status, list, reason, at) VALUES (?,?,?,?,?)",
                [(*action, stamp) for action in actions],
            )

    def actions(self, *, pending: bool = False) -> list[Action]:
        where = "applied_at IS NULL" if pending else "1"
        with self.connect() as db:
            rows = db.execute(
                "SELECT id, key, status, list, reason, at, applied_at FROM actions "
                f"WHERE {where} ORDER BY id"
            ).fetchall()
        return [Action(*row) for row in rows]

    # For sends and erasure ------------------------------------------------------------

    def withdrawn(self, list_name: str) -> tuple[dict[str, str], set[str], dict[str, str]]:
        """({key: status} not to be mailed from this list, address ids not matched to a key,
        {key or id: the source a list row shows once they are folded into it})."""
        statuses: dict[str, str] = {}
        ids: set[str] = set()
        sources: dict[str, str] = {}
        for entry in self.unsubscribes(list_name):
            if entry.key:
                statuses[entry.key] = "unsubscribed"
                sources[entry.key] = f"web:{entry.via}"
            elif entry.applied_at is None:
                ids.add(entry.address_id)
                sources[entry.address_id] = f"web:{entry.via}"
        for action in self.actions(pending=True):
            if action.list_name in (None, list_name):
                current = statuses.get(action.key)
                if current is None or RANK[action.status] > RANK[current]:
                    statuses[action.key] = action.status
                    sources[action.key] = provider_of(action)
        return statuses, ids, sources

    def forget(self, entries: Iterable[tuple[str, str]], key: str | None = None) -> int:
        """Delete these (list, address id) unsubscribes and, given a key, every unsubscribe
        and provider action of that key; how many entries went."""
        with self.transaction() as db:
            gone = 0
            for list_name, ident in entries:
                gone += db.execute(
                    "DELETE FROM unsubscribes WHERE list = ? AND address_id = ?", (list_name, ident)
                ).rowcount
            if key is not None:
                gone += db.execute("DELETE FROM unsubscribes WHERE key = ?", (key,)).rowcount
                gone += db.execute("DELETE FROM actions WHERE key = ?", (key,)).rowcount
        return gone


# For sends and erasure, by workspace ---------------------------------------------------


def withdrawn(
    state_dir: Path, list_name: str, secret: bytes | None = None
) -> subs.Withdrawn | None:
    """What a send, a count, a listing or an export of this list must see as opted out that
    the list file may not show yet (None: nothing)."""
    journal = Journal.existing(state_dir)
    if journal is None:
        return None
    with journal:
        statuses, ids, sources = journal.withdrawn(list_name)
    if not statuses and not ids:
        return None
    # Only address ids not matched to a row need the secret (read lazily: most never do).
    ident = partial(address_id, secret or load_secret(state_dir), list_name) if ids else None
    return subs.Withdrawn(statuses, frozenset(ids), ident, sources)


def provider_of(action: Action) -> str:
    """The source a list row shows for a provider's action: the provider, from its reason."""
    return action.reason.partition(":")[0] if action.reason else "provider"


def unsubscribe_pending(state_dir: Path, list_name: str, ident: str) -> bool:
    """Whether an unsubscribe of this address id is kept but not applied to the list yet."""
    journal = Journal.existing(state_dir)
    if journal is None:
        return False
    with journal:
        return any(u.address_id == ident for u in journal.unsubscribes(list_name, pending=True))


def clear(state_dir: Path, key: str, list_name: str | None = None) -> int:
    """Take back the opt-outs of an address: on one list (they asked to be subscribed again),
    or everywhere with its provider actions too (`forget`). How many entries went."""
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
