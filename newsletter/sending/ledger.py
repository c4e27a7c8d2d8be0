"""SQLite record of who got which issue: the state of every recipient of every send.

A recipient is written `in_flight` before its message goes to the provider and `sent` only
once the provider accepted it, so a crash leaves `in_flight` rows behind; the next send
of the issue turns them into `unknown` (they may or may not have been delivered) and
never sends to them again unless asked to. Between a batch's writes, its steps are in its
worker's journal (journal.py); opening the ledger, or claiming an issue, applies the journals
a send that died left behind (recovery.py).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from newsletter.db import Database
from newsletter.errors import SendError
from newsletter.sending import journal, recovery

LEDGER_NAME = "ledger.sqlite3"
SCHEMA_VERSION = 2

IN_FLIGHT = "in_flight"  # handed (or about to be handed) to the provider, no answer yet
SENT = "sent"  # the provider accepted it
FAILED = "failed"  # permanent: rejected by the provider, or its merge fields failed
RETRY = "retry"  # a temporary failure: not sent, tried again by the next send
UNKNOWN = "unknown"  # was in flight when the send died: it may have been delivered
INVALID = "invalid"  # its row in the list is malformed: skipped, the error says where and why
STATES = (SENT, FAILED, RETRY, UNKNOWN, IN_FLIGHT, INVALID)
STOPPED = "the send stopped before the provider answered"  # why an in-flight row is unknown
NOT_HANDED = "not handed over: the send stopped first"  # why an in-flight row is retry again

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    issue TEXT NOT NULL,
    list TEXT NOT NULL,
    provider TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT,
    segment TEXT
);
CREATE TABLE recipients (
    issue TEXT NOT NULL,
    key TEXT NOT NULL,
    list TEXT NOT NULL,
    email TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_id TEXT,
    run INTEGER,
    batch INTEGER,
    first_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    error TEXT,
    PRIMARY KEY (issue, key)
) WITHOUT ROWID;
"""
# Version 2: a run records the segment it sent to (NULL: the whole list).
_UPGRADES = {2: "ALTER TABLE runs ADD COLUMN segment TEXT"}
_CHUNK = 1000  # keys per statement (a send batch), fewer where SQLite allows fewer variables


def segments_by_list(rows) -> dict[str, list[str]]:
    """(list, segment) rows of runs, in run order -> each list's segments, first used first."""
    out: dict[str, list[str]] = {}
    for list_name, segment in rows:
        if segment not in out.setdefault(list_name, []):
            out[list_name].append(segment)
    return out


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Row:
    issue: str
    key: str
    list: str
    email: str
    state: str
    attempts: int
    provider_id: str | None
    run: int | None
    batch: int | None
    first_at: str
    updated_at: str
    sent_at: str | None
    error: str | None


class Outcome(NamedTuple):
    """What became of one recipient's message: the new state and what the provider said."""

    key: str
    state: str
    provider_id: str | None = None
    error: str | None = None


class Ledger(Database):
    """One SQLite file per workspace, shared by worker threads (one lock, short transactions)."""

    def __init__(self, path: Path | None) -> None:
        """Open (creating it if needed) the ledger at path; None keeps it in memory only."""
        super().__init__(
            path, _SCHEMA, SCHEMA_VERSION, SendError, name="the send ledger", upgrades=_UPGRADES
        )
        self._fit_statements()
        recovery.apply_journals(self)

    def _fit_statements(self) -> None:
        """Rows per statement within this SQLite's variable limit: 999 before 3.32, then 32,766."""
        with self.connect() as db:
            room = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 16
        self._keys_per_statement = max(1, min(_CHUNK, room))
        self._pairs_per_statement = max(1, min(_CHUNK, room // 2))

    @classmethod
    def for_workspace(cls, state_dir: Path) -> Ledger:
        return cls(state_dir / LEDGER_NAME)

    def _write(self, sql: str, rows: Iterable[Sequence]) -> None:
        with self.transaction() as db:
            db.executemany(sql, rows)

    def _write_chunks(self, statements: Iterable[tuple[str, Sequence]]) -> None:
        """Run statements that each cover many rows, in one transaction.

        One statement per batch rather than one per row: sqlite3 lets go of the GIL at every
        step, and getting it back behind a busy thread costs up to 5 ms each. A lone
        statement is a transaction of its own, without a BEGIN and a COMMIT to wait for.
        """
        statements = list(statements)
        if len(statements) == 1:
            with self.connect() as db:
                db.execute(*statements[0])
            return
        with self.transaction() as db:
            for sql, params in statements:
                db.execute(sql, params)

    # Runs -----------------------------------------------------------------------------

    @contextmanager
    def claim(self, issue: str):
        """One send of an issue at a time; in-flight rows left by a dead send become unknown."""
        lock = None
        if self.path is not None:
            lock = recovery.issue_lock(self.path.parent, issue)
            if lock is None:
                raise SendError(
                    f"another `newsletter send` of {issue} is running (it holds "
                    f"{self.path.parent / f'send-{issue}.lock'}); wait for it to finish"
                )
        try:
            recovery.apply_journals(self, issue)
            self._write(
                "UPDATE recipients SET state = ?, updated_at = ?, error = ? "
                "WHERE issue = ? AND state = ?",
                [(UNKNOWN, now(), STOPPED, issue, IN_FLIGHT)],
            )
            yield
        finally:
            if lock is not None:
                lock.release()

    def is_sending(self, issue: str) -> bool:
        """Whether a send of the issue holds its lock right now (in another process)."""
        if self.path is None:
            return False
        lock = recovery.issue_lock(self.path.parent, issue)
        if lock is None:
            return True
        lock.release()
        return False

    def settle(self, replay: journal.Replay) -> None:
        """Store the answers a journal holds; what it shows never handed over leaves flight."""
        issue, run, stamp = replay.issue, replay.run, now()
        steps = replay.last.items()
        answers = [step for _, step in steps if step not in (journal.GO, journal.IDLE)]
        with self.transaction() as db:
            db.executemany(
                "UPDATE recipients SET state = ?, provider_id = coalesce(?, provider_id), "
                "error = ?, updated_at = ?, sent_at = coalesce(?, sent_at) "
                "WHERE issue = ? AND key = ? AND run = ? AND state = ?",
                [
                    (state, provider_id, error, stamp, stamp if state == SENT else None)
                    + (issue, key, run, IN_FLIGHT)
                    for key, state, provider_id, error in answers
                ],
            )
            idle = [key for key, step in steps if step == journal.IDLE]
            self._release(db, issue, idle, NOT_HANDED, stamp)

    def start_run(
        self, issue: str, list_name: str, provider: str, segment: str | None = None
    ) -> int:
        with self.connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (issue, list, provider, started_at, segment) "
                "VALUES (?, ?, ?, ?, ?)",
                (issue, list_name, provider, now(), segment),
            )
            return int(cursor.lastrowid)

    def segments(self, issue: str) -> dict[str, list[str]]:
        """List -> the segments its runs of the issue used, first used first ("" = whole list)."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT list, coalesce(segment, '') FROM runs WHERE issue = ? ORDER BY id",
                (issue,),
            ).fetchall()
        return segments_by_list(rows)

    def finish_run(self, run: int, outcome: str) -> None:
        self._write(
            "UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?", [(now(), outcome, run)]
        )

    # Recipients ---------------------------------------------------------------------

    def blocked(
        self, issue: str, keys: Sequence[str], resend_unknown: bool = False
    ) -> dict[str, str]:
        """The keys that must not be sent now, with their state; every other key may be sent.

        Sent and permanently failed recipients are done; unknown ones are held back unless
        resend_unknown. A failure before the provider saw the message (attempts = 0, e.g. a
        merge field error) and a temporary failure are tried again.
        """
        out: dict[str, str] = {}
        step = self._keys_per_statement
        for start in range(0, len(keys), step):
            chunk = keys[start : start + step]
            marks = ",".join("?" * len(chunk))
            with self.connect() as db:
                rows = db.execute(
                    f"SELECT key, state, attempts FROM recipients "
                    f"WHERE issue = ? AND key IN ({marks})",
                    (issue, *chunk),
                ).fetchall()
            out.update((key, state) for key, state, n in rows if holds(state, n, resend_unknown))
        return out

    def mark_in_flight(
        self,
        issue: str,
        list_name: str,
        run: int,
        batch: int,
        recipients: Sequence[tuple[str, str]],
    ) -> None:
        """Record (key, email) pairs as handed to the provider: call before handing them over."""
        stamp = now()

        def statements():
            step = self._pairs_per_statement
            for start in range(0, len(recipients), step):
                chunk = recipients[start : start + step]
                values = ",".join(["(?, ?)"] * len(chunk))
                sql = (
                    f"WITH batch (key, email) AS (VALUES {values}) "
                    "INSERT INTO recipients (issue, key, list, email, state, attempts, run, "
                    "batch, first_at, updated_at) "
                    "SELECT ?, key, ?, email, ?, 1, ?, ?, ?, ? FROM batch WHERE 1 "
                    "ON CONFLICT (issue, key) DO UPDATE SET state = excluded.state, "
                    "attempts = attempts + 1, list = excluded.list, email = excluded.email, "
                    "run = excluded.run, batch = excluded.batch, "
                    "updated_at = excluded.updated_at, error = NULL"
                )
                flat = [value for pair in chunk for value in pair]
                yield sql, (*flat, issue, list_name, IN_FLIGHT, run, batch, stamp, stamp)

        self._write_chunks(statements())

    def release(self, issue: str, keys: Sequence[str], reason: str = NOT_HANDED) -> None:
        """Take keys marked in flight that never went to the provider out of flight again:
        not sent, so the next send sends them (their attempt is not counted)."""
        with self.transaction() as db:
            self._release(db, issue, keys, reason, now())

    def _release(self, db, issue: str, keys: Sequence[str], reason: str, stamp: str) -> None:
        db.executemany(
            "UPDATE recipients SET state = ?, attempts = max(attempts - 1, 0), error = ?, "
            "updated_at = ? WHERE issue = ? AND key = ? AND state = ?",
            [(RETRY, reason, stamp, issue, key, IN_FLIGHT) for key in keys],
        )

    def record(self, issue: str, outcomes: Iterable[Outcome]) -> None:
        """Store what the provider said about recipients that were marked in flight."""
        stamp = now()
        groups: dict[tuple, list[str]] = {}
        # A batch usually shares one answer: one statement for all of it. Outcomes may be
        # plain (key, state, provider_id, error) tuples: a send records a lot of them.
        for key, state, provider_id, error in outcomes:
            groups.setdefault((state, provider_id, error), []).append(key)

        def statements():
            for (state, provider_id, error), keys in groups.items():
                sent_at = stamp if state == SENT else None
                step = self._keys_per_statement
                for start in range(0, len(keys), step):
                    chunk = keys[start : start + step]
                    sql = (
                        "UPDATE recipients SET state = ?, provider_id = coalesce(?, provider_id), "
                        "error = ?, updated_at = ?, sent_at = coalesce(?, sent_at) "
                        f"WHERE issue = ? AND key IN ({','.join('?' * len(chunk))})"
                    )
                    yield sql, (state, provider_id, error, stamp, sent_at, issue, *chunk)

        self._write_chunks(statements())

    def record_unsent(
        self, issue: str, list_name: str, run: int, failures: Iterable[tuple[str, str, str]]
    ) -> None:
        """Record (key, email, reason) of recipients whose message could not be built."""
        self._record_unsent(issue, list_name, run, FAILED, failures)

    def record_invalid(
        self, issue: str, list_name: str, run: int, rows: Iterable[tuple[str, str, str]]
    ) -> None:
        """Record (key, email, "file:line: reason") of list rows skipped as malformed.

        Never over a recipient the provider may have (sent, failed, unknown): the row of an
        address already sent may have gone bad since, and the ledger must still say so.
        """
        only = f"WHERE recipients.attempts = 0 OR recipients.state IN ('{RETRY}', '{INVALID}')"
        self._record_unsent(issue, list_name, run, INVALID, rows, only)

    def _record_unsent(
        self,
        issue: str,
        list_name: str,
        run: int,
        state: str,
        rows: Iterable[tuple[str, str, str]],
        condition: str = "",
    ) -> None:
        """(key, email, reason) rows that never reached the provider, in `state`."""
        stamp = now()
        self._write(
            "INSERT INTO recipients (issue, key, list, email, state, attempts, run, first_at, "
            "updated_at, error) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?) "
            "ON CONFLICT (issue, key) DO UPDATE SET state = excluded.state, "
            "list = excluded.list, email = excluded.email, run = excluded.run, "
            f"updated_at = excluded.updated_at, error = excluded.error {condition}",
            [
                (issue, key, list_name, email, state, run, stamp, stamp, reason)
                for key, email, reason in rows
            ],
        )

    def clear_invalid(self, issue: str, list_name: str) -> None:
        """Forget the rows an earlier send found malformed: this send reads the list again."""
        self._write(
            "DELETE FROM recipients WHERE issue = ? AND list = ? AND state = ?",
            [(issue, list_name, INVALID)],
        )

    def forget(self, key: str, replacement: str) -> int:
        """GDPR erasure: the address's rows keep their state but only `replacement` (a hash)."""
        with self.connect() as db:
            return db.execute(
                "UPDATE recipients SET key = ?, email = ? WHERE key = ?",
                (replacement, replacement, key),
            ).rowcount

    def unknown_batches(self, issue: str) -> dict[str, tuple[int, int]]:
        """{key: (run, batch)} of the recipients whose outcome is unknown: how they last went."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, run, batch FROM recipients WHERE issue = ? AND state = ? "
                "AND run IS NOT NULL AND batch IS NOT NULL",
                (issue, UNKNOWN),
            ).fetchall()
        return {key: (run, batch) for key, run, batch in rows}

    def counts(self, issue: str) -> dict[str, dict[str, int]]:
        """{list: {state: count}} for an issue, lists in the order they were first sent to."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT list, state, count(*), min(first_at) FROM recipients WHERE issue = ? "
                "GROUP BY list, state ORDER BY 4",
                (issue,),
            ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for list_name, state, count, _ in rows:
            out.setdefault(list_name, {})[state] = count
        return out

    def first_sent(self) -> dict[str, str]:
        """{issue: when its first message was accepted} for every issue sent to anyone."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT issue, min(sent_at) FROM recipients WHERE state = ? GROUP BY issue",
                (SENT,),
            ).fetchall()
        return {issue: stamp for issue, stamp in rows if stamp}

    def rows(
        self, issue: str, states: Sequence[str] | None = None, list_name: str | None = None
    ) -> Iterator[Row]:
        """Recipients of an issue (optionally of some states or one list), by address, streamed."""
        where = "issue = ?"
        params: list = [issue]
        if states:
            where += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        if list_name is not None:
            where += " AND list = ?"
            params.append(list_name)
        last = ""
        while True:
            with self.connect() as db:
                page = db.execute(
                    f"SELECT * FROM recipients WHERE {where} AND key > ? ORDER BY key LIMIT 1000",
                    (*params, last),
                ).fetchall()
            if not page:
                return
            for row in page:
                yield Row(*row)
            last = page[-1][1]


def holds(state: str, attempts: int, resend_unknown: bool) -> bool:
    """Whether a recipient in this state must not be sent now (see Ledger.blocked)."""
    return (
        state == SENT
        or (state == FAILED and attempts > 0)
        or (state in (UNKNOWN, IN_FLIGHT) and not resend_unknown)
    )


def issue_slug(issue: str) -> str:
    """The ledger name of an issue given as a file path or as its slug."""
    from newsletter.issue import slugify

    path = Path(issue)
    if path.suffix == ".md" or path.exists():
        return slugify(path.stem)
    return issue
