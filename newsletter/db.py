"""The workspace's SQLite files: created private, WAL, a checked schema version, one error class.

The send ledger, the event store, the opt-out journal and the opt-in requests each keep one file
in the state folder. `open_db` opens one the same way for all of them; `Database` adds the one
connection that a store shares between its threads, with errors raised as the store's own class.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from newsletter.errors import NewsletterError
from newsletter.files import create_private


def open_db(
    path: Path | None,
    schema: str,
    version: int,
    error: type[NewsletterError],
    *,
    name: str,
    synchronous: str = "NORMAL",
    upgrades: Mapping[int, str] | None = None,
) -> sqlite3.Connection:
    """A connection to path (None: in memory), its schema created or checked; `error` if not.

    `name` says what the file is in messages ("the send ledger"). NORMAL in WAL mode: a
    commit survives the process being killed (the OS has it); only a power cut can lose the
    last commits. FULL where an answer already given depends on the commit.
    """
    where = str(path) if path else None
    if path is not None:
        create_private(path)  # 0600 before SQLite opens it: -wal and -shm follow
    db = None
    try:
        db = sqlite3.connect(
            str(path) if path else ":memory:",
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found == 0:
            db.executescript(f"BEGIN IMMEDIATE; {schema}; PRAGMA user_version = {version}; COMMIT;")
        elif found < version and upgrades:
            _upgrade(db, found, version, upgrades)
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        raise error(f"cannot open {name}: {exc}", where=where) from None
    if found > version:
        db.close()
        raise error(
            f"{name} has schema version {found}, newer than this program's {version}: "
            "upgrade newsletter",
            where=where,
        )
    return db


def _upgrade(db: sqlite3.Connection, found: int, version: int, upgrades: Mapping[int, str]) -> None:
    """Bring an older file up to `version`, one step at a time, each in its own transaction."""
    for step in range(found + 1, version + 1):
        db.execute("BEGIN IMMEDIATE")
        # Another process may have upgraded it while this one waited for the lock.
        if db.execute("PRAGMA user_version").fetchone()[0] >= step:
            db.execute("COMMIT")
            continue
        try:
            # execute, not executescript: that would commit the BEGIN above first.
            db.execute(upgrades[step])
            db.execute(f"PRAGMA user_version = {step}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class Database:
    """One SQLite file and one connection, shared by threads one at a time (other processes
    wait on SQLite's lock)."""

    def __init__(
        self,
        path: Path | None,
        schema: str,
        version: int,
        error: type[NewsletterError],
        *,
        name: str,
        synchronous: str = "NORMAL",
        upgrades: Mapping[int, str] | None = None,
    ) -> None:
        self.path = path
        self.error = error
        self.name = name
        self._lock = threading.RLock()
        self._db = open_db(
            path, schema, version, error, name=name, synchronous=synchronous, upgrades=upgrades
        )

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone; an SQLite error rolls back and is re-raised
        as the store's error."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                where = str(self.path) if self.path else None
                raise self.error(f"cannot write {self.name}: {exc}", where=where) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """connect() inside BEGIN IMMEDIATE ... COMMIT; any exception rolls it back."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Batch:
    items: list = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    results: list | None = None  # what the commit returned, one per item


class GroupCommit:
    """Many threads' writes, committed together: while one commit (and its fsync) runs, the
    writes arriving meanwhile gather into the next one, which the first of them commits. Each
    `submit` returns once its own write is durable (or raises what its commit raised), so 200
    unsubscribes at once cost a few fsyncs, not 200 in a row. A commit may return one result
    per item (a list in the items' order): `submit` returns its item's."""

    def __init__(self, commit: Callable[[list], list | None]) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._open = _Batch()
        self._busy = False

    def submit(self, item):
        return self.submit_many([item])[0]

    def submit_many(self, items: list) -> list:
        """submit() of several items at once, in the same commit: their results, in order."""
        with self._cond:
            batch = self._open
            index = len(batch.items)
            batch.items.extend(items)
            while not batch.done:
                if self._busy:
                    self._cond.wait()
                    continue
                # No commit running, so ours is the open batch: commit it for everyone in it.
                self._open, self._busy = _Batch(), True
                self._cond.release()
                try:
                    batch.results = self._commit(batch.items)
                except BaseException as exc:  # every writer of the batch hears of it
                    batch.error = exc
                finally:
                    self._cond.acquire()
                    batch.done, self._busy = True, False
                    self._cond.notify_all()
            if batch.error is not None:
                raise batch.error
            if batch.results is None:
                return [None] * len(items)
            return batch.results[index : index + len(items)]
