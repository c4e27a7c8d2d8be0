"""SQLite record of what happened to addresses after sending: provider events and web actions.

Every SendGrid event the webhook receives is kept (for later reporting), once: a repeated
`sg_event_id` is ignored, so a retried or replayed delivery changes nothing. Web actions
(unsubscribe, resubscribe, confirm) are kept too, with `source = 'web'`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.db import Database, GroupCommit
from newsletter.errors import NewsletterError

EVENTS_NAME = "events.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    email TEXT,
    list TEXT,
    issue TEXT,
    occurred_at TEXT,
    received_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (source, event_id)
);
CREATE INDEX events_email ON events (email);
CREATE INDEX events_kind ON events (event, occurred_at);
"""


_COLUMNS = ("source", "event_id", "event", "email", "list_name", "issue", "occurred_at")


class EventStoreError(NewsletterError):
    """The state database cannot be opened or written."""


@dataclass(frozen=True)
class Event:
    source: str  # "sendgrid" or "web"
    event_id: str  # unique per source; duplicates are ignored
    event: str  # bounce, dropped, spamreport, unsubscribe, ..., or a web action
    email: str | None = None
    list_name: str | None = None
    issue: str | None = None
    occurred_at: str | None = None  # ISO 8601, UTC
    payload: dict = field(default_factory=dict)

    def row(self) -> tuple:
        """(source, event_id, event, email, list, issue, occurred_at, payload as JSON)."""
        payload = json.dumps(self.payload, ensure_ascii=False, sort_keys=True)
        return (*(getattr(self, f) for f in _COLUMNS), payload)


def now_iso() -> str:
    """Now, UTC, ISO 8601 to the second (as events are stamped)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def web_event(kind: str, email: str, list_name: str, **payload: str) -> Event:
    """An action taken on the web service (unsubscribe, resubscribe, confirm, ...)."""
    return Event(
        source="web",
        event_id=secrets.token_hex(12),
        event=kind,
        email=email,
        list_name=list_name,
        occurred_at=now_iso(),
        payload=payload,
    )


class EventStore(Database):
    """One SQLite file in the workspace's state folder, one connection shared by threads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, SCHEMA_VERSION, EventStoreError, name="the event store")
        self._grouped = GroupCommit(self._add_all)

    @classmethod
    def for_workspace(cls, state_dir: Path) -> EventStore:
        return cls(state_dir / EVENTS_NAME)

    @contextmanager
    def recording(self, events: Iterable[Event]) -> Iterator[list[Event]]:
        """Insert the events and yield those not seen before; committed only if the block succeeds.

        A failure while acting on the new events rolls them back, so the provider's retry of
        the same delivery acts on them again instead of finding them already recorded.
        """
        with self.transaction() as db:
            new = []
            stamp = now_iso()
            for event in events:
                row = event.row()
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (source, event_id, event, email, list, "
                    "issue, occurred_at, received_at, payload) VALUES (?,?,?,?,?,?,?,?,?)",
                    (*row[:7], stamp, row[7]),
                )
                if cursor.rowcount:
                    new.append(event)
            yield new

    def add(self, events: Iterable[Event]) -> list[Event]:
        """Record events; returns those that were new."""
        with self.recording(events) as new:
            return new

    def add_grouped(self, event: Event) -> None:
        """Record one event, committed together with those other threads add meanwhile:
        200 unsubscribes at once are a few commits of the event store, not 200 in a row."""
        self._grouped.submit(event)

    def add_grouped_many(self, events: list[Event]) -> None:
        """add_grouped() of several events, in the same commit."""
        self._grouped.submit_many(events)

    def _add_all(self, events: list[Event]) -> None:
        self.add(events)

    def counts(self, source: str | None = None) -> dict[str, int]:
        """Events by kind (for reports)."""
        query = "SELECT event, count(*) FROM events"
        params: Sequence = ()
        if source:
            query += " WHERE source = ?"
            params = (source,)
        with self.connect() as db:
            return dict(db.execute(query + " GROUP BY event ORDER BY event", params).fetchall())

    def for_email(self, email: str) -> list[Event]:
        """Every event recorded for an address (as received), oldest first."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT source, event_id, event, email, list, issue, occurred_at, payload "
                "FROM events WHERE email = ? ORDER BY id",
                (email,),
            ).fetchall()
        return [Event(*row[:7], payload=json.loads(row[7])) for row in rows]

    def forget(self, emails: Sequence[str]) -> int:
        """Erase the events of these addresses (for `subscribers forget`); how many went."""
        if not emails:
            return 0
        with self.connect() as db:
            marks = ",".join("?" * len(emails))
            return db.execute(f"DELETE FROM events WHERE email IN ({marks})", emails).rowcount
