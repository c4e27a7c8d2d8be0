"""`serve` on PostgreSQL: one connection pool, and the stores the files store keeps in SQLite.

Every `serve` instance behind one proxy opens its own pool on the same database, so they share
the events, the opt-in requests, the opt-out journal and the subscribe form's rate limits.
Each request is one short statement or transaction on a pooled connection; nothing is kept in
an instance's memory that another would need. When the database cannot be reached, the
operation raises StoreError (the handlers answer 503; nothing is acknowledged unrecorded).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from newsletter.errors import StoreError
from newsletter.store import pg, redact
from newsletter.web.events import Event
from newsletter.web.requests import Request

T = TypeVar("T")
POOL_WAIT = 5.0  # seconds a request waits for a connection before answering 503


class Pg:
    """The pool, and `run`, which every statement of serve goes through."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.pool: ConnectionPool = pg.pool(url, size=size)

    def run(self, work: Callable[[psycopg.Connection], T], doing: str) -> T:
        """work(conn) on a pooled autocommit connection; StoreError when the store fails.

        A connection the server dropped (a restart) is found out on first use: the work is
        tried once more on a fresh one. Everything run here is idempotent for that reason.
        """
        for attempt in (1, 2):
            try:
                with self.pool.connection(timeout=POOL_WAIT) as conn:
                    conn.autocommit = True
                    return work(conn)
            except PoolTimeout as exc:
                raise StoreError(f"{doing}: the store is unavailable ({exc})") from None
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    message = pg.scrub(str(exc), self.url)
                    raise StoreError(f"{doing}: {message}", where=redact(self.url)) from None
            except psycopg.Error as exc:
                message = pg.scrub(str(exc), self.url)
                raise StoreError(f"{doing}: {message}", where=redact(self.url)) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.pool.close()


# --- events -------------------------------------------------------------------------------


def event_id() -> str:
    """A web event's id, chosen once per action: a retried statement records it once."""
    return secrets.token_hex(12)


INSERT_EVENT = (
    "INSERT INTO web_events (source, event_id, event, email, list, issue, occurred_at, "
    "payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (source, event_id) DO NOTHING"
)


def insert_events(conn: psycopg.Connection, events: Sequence[Event]) -> list[Event]:
    """Insert the events (inside the caller's transaction); those not seen before."""
    new = []
    with conn.cursor() as cur:
        for event in events:
            cur.execute(INSERT_EVENT, event.row())
            if cur.rowcount:
                new.append(event)
    return new


class PgEvents:
    """web_events: what EventStore is on the files store (add, counts, for_email, forget)."""

    def __init__(self, db: Pg) -> None:
        self.db = db

    def add(self, events: Iterable[Event]) -> list[Event]:
        batch = list(events)
        return self.db.run(lambda conn: insert_events(conn, batch), "cannot record events")

    def counts(self, source: str | None = None) -> dict[str, int]:
        where, params = ("WHERE source = %s", (source,)) if source else ("", ())
        sql = f"SELECT event, count(*) FROM web_events {where} GROUP BY event ORDER BY event"
        return dict(self.db.run(lambda c: c.execute(sql, params).fetchall(), "cannot count"))

    def for_email(self, email: str) -> list[Event]:
        rows = self.db.run(
            lambda c: c.execute(
                "SELECT source, event_id, event, email, list, issue, occurred_at, payload "
                "FROM web_events WHERE email = %s ORDER BY id",
                (email,),
            ).fetchall(),
            "cannot read events",
        )
        return [Event(*row[:7], payload=row[7]) for row in rows]


# --- opt-in requests --------------------------------------------------------------------------


class PgRequests:
    """web_optin_requests: what RequestStore is on the files store."""

    def __init__(self, db: Pg) -> None:
        self.db = db

    def open(
        self, list_name: str, address_id: str, request_id: str, row_status: str, row_updated: str
    ) -> None:
        self.db.run(
            lambda c: c.execute(
                "INSERT INTO web_optin_requests (list, address_id, request_id, row_status, "
                "row_updated) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (list, address_id) DO "
                "UPDATE SET request_id = EXCLUDED.request_id, row_status = EXCLUDED.row_status,"
                " row_updated = EXCLUDED.row_updated, requested_at = now(), confirmed_at = NULL",
                (list_name, address_id, request_id, row_status, row_updated),
            ),
            "cannot record the subscribe request",
        )

    def get(self, list_name: str, address_id: str, request_id: str) -> Request | None:
        row = self.db.run(
            lambda c: c.execute(
                "SELECT request_id, row_status, row_updated, confirmed_at IS NOT NULL "
                "FROM web_optin_requests WHERE list = %s AND address_id = %s AND request_id = %s",
                (list_name, address_id, request_id),
            ).fetchone(),
            "cannot read the subscribe request",
        )
        return Request(*row) if row else None


# --- rate limits ----------------------------------------------------------------------------


class PgRateLimiter:
    """guards.RateLimiter shared by every instance: rate_limit_hits, one row per counted hit.

    Keys (client addresses, email keys) are stored hashed. Two instances counting the same key
    at once take turns on an advisory lock, so the limit holds across them.
    """

    def __init__(self, db: Pg, scope: str, limit: int, window: float) -> None:
        self.db, self.scope, self.limit, self.window = db, scope, limit, window
        self._calls = 0
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        if self.limit <= 0:
            return True
        hashed = hashlib.sha256(key.encode()).hexdigest()
        with self._lock:
            self._calls += 1
            sweep = self._calls % 500 == 1  # now and then, forget every old hit

        def work(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"{self.scope}:{hashed}",),
                )
                gone = "at <= now() - make_interval(secs => %s)"
                if sweep:
                    conn.execute(f"DELETE FROM rate_limit_hits WHERE {gone}", (self.window,))
                counted = conn.execute(
                    "WITH recent AS (SELECT count(*) AS n FROM rate_limit_hits WHERE scope = %s"
                    " AND key = %s AND at > now() - make_interval(secs => %s)) "
                    "INSERT INTO rate_limit_hits (scope, key) SELECT %s, %s FROM recent "
                    "WHERE n < %s RETURNING 1",
                    (self.scope, hashed, self.window, self.scope, hashed, self.limit),
                ).fetchone()
                return counted is not None

        return self.db.run(work, "cannot check the rate limit")
