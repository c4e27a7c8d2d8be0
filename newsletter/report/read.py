"""The rows a report is computed from, read from the files store: the send ledger
(.newsletter/ledger.sqlite3), serve's event store (.newsletter/events.sqlite3) and the links
manifest a send writes (.newsletter/links/<issue>.json).

This is the report's only contact with storage: `figures.compute` is a pure function of
`Rows`. A PostgreSQL reader (the store's ledger and events tables) only has to return the
same `Rows` and `Send` values.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.sending.ledger import LEDGER_NAME
from newsletter.tracking.links import Link, read_links
from newsletter.web.events import EVENTS_NAME


class ReportError(NewsletterError):
    """The state a report reads cannot be read."""


@dataclass(frozen=True)
class Recipient:
    """One ledger row: who the issue was for and what became of the hand-over."""

    list: str
    key: str  # the normalised address (subscribers.email_key), as events name it
    state: str
    sent_at: str | None
    error: str | None = None


@dataclass(frozen=True)
class Stored:
    """One stored event, as the event store keeps it (any provider, or `web` / `tracking`)."""

    source: str
    event: str
    email: str | None
    list: str | None
    issue: str | None
    occurred_at: str | None
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rows:
    issue: str
    recipients: list[Recipient]
    events: list[Stored]  # events naming the issue
    # web unsubscribes of the issue's recipients since it was first sent: figures decides
    # which of them this issue caused (see figures.WEB_UNSUBSCRIBE_RULE)
    web_unsubscribes: list[Stored]
    # (key, issue, sent_at) of the other issues sent to those same recipients afterwards
    later_sends: list[tuple[str, str, str]]
    links: list[Link]


@dataclass(frozen=True)
class Send:
    issue: str
    lists: tuple[str, ...]
    started_at: str


def _open(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when the file does not exist yet (nothing recorded)."""
    if not path.exists():
        return None
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportError(f"{path}: cannot open: {exc}") from None


def _query(db: sqlite3.Connection | None, path: Path, sql: str, params=()) -> list[tuple]:
    if db is None:
        return []
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None


class FilesReader:
    """Reads a workspace's SQLite files; opened read-only, never changes them."""

    def __init__(self, config: Config) -> None:
        self.state_dir = config.state_dir
        self.ledger_path = config.state_dir / LEDGER_NAME
        self.events_path = config.state_dir / EVENTS_NAME

    def sends(self, limit: int = 10) -> list[Send]:
        """The most recent sends (one per issue, newest first)."""
        db = _open(self.ledger_path)
        try:
            rows = _query(
                db,
                self.ledger_path,
                "SELECT issue, group_concat(DISTINCT list), min(started_at) FROM runs "
                "GROUP BY issue ORDER BY 3 DESC LIMIT ?",
                (limit,),
            )
        finally:
            if db is not None:
                db.close()
        return [Send(issue, tuple(sorted(lists.split(","))), start) for issue, lists, start in rows]

    def rows(self, issue: str, list_name: str | None = None) -> Rows:
        ledger = _open(self.ledger_path)
        events = _open(self.events_path)
        try:
            return self._rows(ledger, events, issue, list_name)
        finally:
            for db in (ledger, events):
                if db is not None:
                    db.close()

    def _rows(self, ledger, events, issue: str, list_name: str | None) -> Rows:
        where, params = "issue = ?", [issue]
        if list_name is not None:
            where, params = where + " AND list = ?", [*params, list_name]
        recipients = [
            Recipient(*row)
            for row in _query(
                ledger,
                self.ledger_path,
                f"SELECT list, key, state, sent_at, error FROM recipients WHERE {where} "
                "ORDER BY list, key",
                params,
            )
        ]
        columns = "source, event, email, list, issue, occurred_at, payload"
        stored = [
            _stored(row)
            for row in _query(
                events,
                self.events_path,
                f"SELECT {columns} FROM events WHERE {where} ORDER BY occurred_at, id",
                params,
            )
        ]
        first = min((r.sent_at for r in recipients if r.sent_at), default=None)
        web, later = [], []
        if first is not None:
            web = [
                _stored(row)
                for row in _query(
                    events,
                    self.events_path,
                    f"SELECT {columns} FROM events WHERE source = 'web' "
                    "AND event = 'unsubscribe' AND occurred_at >= ? ORDER BY occurred_at, id",
                    (first[:19],),
                )
            ]
            later = _query(
                ledger,
                self.ledger_path,
                "SELECT key, issue, sent_at FROM recipients WHERE issue != ? AND sent_at > ?",
                (issue, first),
            )
        return Rows(issue, recipients, stored, web, later, read_links(self.state_dir, issue))


def _stored(row: tuple) -> Stored:
    try:
        payload = json.loads(row[6])
    except ValueError:
        payload = {}
    return Stored(*row[:6], payload=payload if isinstance(payload, dict) else {})
