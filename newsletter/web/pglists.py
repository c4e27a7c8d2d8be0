"""`serve`'s changes to lists on PostgreSQL: each unsubscribe, confirm or provider event is one
small transaction on the `subscribers` row it names (by primary key), whatever the list's size.

A link names a row by address_id(secret, list, key). web_address_ids maps it back in one
lookup; `serve` fills it for the rows it has not seen, at start and when an id is missing
(a row added since), so only the first start after a big import hashes the whole list.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg

from newsletter import subscribers as subs
from newsletter.subscribers.csvfile import status_of
from newsletter.subscribers.model import utc_now
from newsletter.tokens import address_id
from newsletter.web.events import Event
from newsletter.web.pgstore import Pg, event_id, insert_events
from newsletter.web.pgunsub import PgUnsubscribes

log = logging.getLogger("newsletter.serve")

Change = tuple[str, str, str | None, str | None]  # as webhooks.Change
RANK_SQL = (
    "CASE lower(btrim(status)) WHEN 'complained' THEN 3 WHEN 'bounced' THEN 2 "
    "WHEN 'unsubscribed' THEN 1 ELSE 0 END"
)
TARGET_RANK = {"unsubscribed": 1, "bounced": 2, "complained": 3}
_SUPPRESSED = "EXISTS (SELECT 1 FROM suppressions WHERE key IN (%(key)s, %(hash)s))"
_CHUNK = 20_000


class PgDirectory:
    """Address id -> row key (web_address_ids), and rows, for serve on PostgreSQL."""

    def __init__(self, db: Pg, secret: bytes) -> None:
        self.db, self.secret = db, secret
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lookup(self, list_name: str, ident: str) -> tuple[str | None, bool]:
        """(the key of the row this id names or None, True): the list is always read whole."""
        key = self._key(list_name, ident)
        if key is None and self.catch_up(list_name):
            key = self._key(list_name, ident)
        return key, True

    def key_for(self, list_name: str, ident: str) -> str | None:
        return self.lookup(list_name, ident)[0]

    def _key(self, list_name: str, ident: str) -> str | None:
        row = self.db.run(
            lambda c: c.execute(
                "SELECT key FROM web_address_ids WHERE list = %s AND address_id = %s",
                (list_name, ident),
            ).fetchone(),
            "cannot look the link up",
        )
        return row[0] if row else None

    def catch_up(self, list_name: str) -> int:
        """Index the rows of a list not indexed yet; how many. One thread per list at a time
        here; another instance doing the same meanwhile only costs a repeated insert."""
        with self._guard:
            lock = self._locks.setdefault(list_name, threading.Lock())
        with lock:
            return self.db.run(lambda c: self._index(c, list_name), "cannot index the list")

    def _index(self, conn: psycopg.Connection, list_name: str) -> int:
        keys = [
            row[0]
            for row in conn.execute(
                "SELECT s.key FROM subscribers s WHERE s.list = %s AND NOT EXISTS (SELECT 1 "
                "FROM web_address_ids a WHERE a.list = s.list AND a.key = s.key)",
                (list_name,),
            )
        ]
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            ids = [address_id(self.secret, list_name, key) for key in chunk]
            conn.execute(
                "INSERT INTO web_address_ids (list, address_id, key) SELECT %s, i, k "
                "FROM unnest(%s::text[], %s::text[]) AS t(i, k) ON CONFLICT DO NOTHING",
                (list_name, ids, chunk),
            )
        return len(keys)

    def warm(self) -> None:
        """Index every list (at start, in the background): the first unsubscribes are quick."""
        try:
            names = self.db.run(
                lambda c: [r[0] for r in c.execute("SELECT DISTINCT list FROM subscribers")],
                "cannot read the lists",
            )
            for name in names:
                found = self.catch_up(name)
                if found:
                    log.info("indexed %d link ids of list %s", found, name)
        except Exception as exc:  # noqa: BLE001 - a lookup indexes what it needs anyway
            log.warning("link ids not indexed at start: %s", exc)

    def row(self, list_name: str, key: str) -> subs.Subscriber | None:
        found = self.db.run(
            lambda c: c.execute(
                "SELECT email, name, status, subscribed_at, updated_at, source, fields "
                "FROM subscribers WHERE list = %s AND key = %s",
                (list_name, key),
            ).fetchone(),
            "cannot read the subscriber",
        )
        if found is None:
            return None
        email, name, status, since, updated, source, fields = found
        return subs.Subscriber(
            email, name, status_of(status), since, updated, source, fields or {}, known_key=key
        )


class PgLists:
    """The list changes serve makes, each one transaction on PostgreSQL."""

    def __init__(self, db: Pg) -> None:
        self.db = db
        self._unsubscribes = PgUnsubscribes(db)

    def unsubscribe(self, list_name: str, ident: str, key: str | None, via: str) -> None:
        """Keep the unsubscribe, change the row and record the event: one statement, shared
        with the unsubscribes arriving meanwhile (web.pgunsub)."""
        self._unsubscribes.submit(list_name, ident, key, via)

    def unsubscribe_many(self, entries: list[tuple[str, str, str | None]], via: str) -> None:
        """unsubscribe() of several (list, address id, key) at once, in one statement."""
        self._unsubscribes.submit_many(entries, via)

    def unsubscribe_links(self, links: list[tuple[str, str]], via: str) -> list[bool]:
        """unsubscribe() of the rows links' (list, address id) name, found in the same
        statement; False for an id not indexed (a row added since; PgDirectory.lookup
        indexes it)."""
        return self._unsubscribes.submit_many([(name, ident, None) for name, ident in links], via)

    def resubscribe(self, list_name: str, ident: str, key: str | None) -> bool:
        """Undo an unsubscribe: the kept entry goes and an `unsubscribed` row is subscribed
        again (never a bounced, complained or suppressed one). Whether they are subscribed."""
        if key is None:
            return False
        params = {
            "list": list_name,
            "id": ident,
            "key": key,
            "hash": subs.suppression_hash(key),
            "stamp": utc_now(),
            "event": event_id(),
        }

        def work(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                conn.execute(
                    "DELETE FROM web_unsubscribes WHERE list = %(list)s AND "
                    "(address_id = %(id)s OR key = %(key)s)",
                    params,
                )
                status = conn.execute(
                    "UPDATE subscribers SET status = CASE WHEN lower(btrim(status)) = "
                    f"'unsubscribed' AND NOT {_SUPPRESSED} THEN 'subscribed' ELSE status END, "
                    "updated_at = %(stamp)s, source = 'web:resubscribe' "
                    "WHERE list = %(list)s AND key = %(key)s RETURNING status",
                    params,
                ).fetchone()
                done = status is not None and status_of(status[0]) == "subscribed"
                if not done:
                    raise psycopg.Rollback()
                conn.execute(
                    "INSERT INTO web_events (source, event_id, event, email, list, occurred_at)"
                    " VALUES ('web', %(event)s, 'resubscribe', %(key)s, %(list)s, %(stamp)s) "
                    "ON CONFLICT DO NOTHING",
                    params,
                )
                return True
            return False

        return self.db.run(work, "cannot record the resubscribe")

    def record(
        self, events: list[Event], changes: Callable[[Event], Iterable[Change]]
    ) -> tuple[int, int, int]:
        """Record provider events; apply the changes of the new ones to `subscribers` and
        `suppressions` in the same transaction. (new events, changes, new suppressions)."""
        stamp = utc_now()

        def work(conn: psycopg.Connection) -> tuple[int, int, int]:
            with conn.transaction():
                new = insert_events(conn, events)
                found = [change for event in new for change in changes(event)]
                suppressed = 0
                for key, status, list_name, reason in found:
                    conn.execute(
                        "INSERT INTO web_actions (key, status, list, reason) "
                        "VALUES (%s, %s, %s, %s)",
                        (key, status, list_name, reason),
                    )
                    conn.execute(
                        f"UPDATE subscribers SET status = %s, updated_at = %s, source = %s "
                        f"WHERE key = %s AND (%s::text IS NULL OR list = %s) AND {RANK_SQL} < %s",
                        (
                            status,
                            stamp,
                            (reason or "provider").partition(":")[0],
                            key,
                            list_name,
                            list_name,
                            TARGET_RANK[status],
                        ),
                    )
                    if reason and mailable(key):
                        suppressed += conn.execute(
                            "INSERT INTO suppressions (key, email, reason, at) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                            (key, key, reason, stamp),
                        ).rowcount
                return len(new), len(found), suppressed

        return self.db.run(work, "cannot record the provider events")

    # --- double opt-in ------------------------------------------------------------------

    def add_pending(self, list_name: str, email: str, name: str, ident: str) -> None:
        """A new `pending` row at the end of the list (nothing when the address is there),
        and its link id, so its confirmation finds it in one lookup."""
        key = subs.email_key(email)
        params = (list_name, key, email.strip(), name, utc_now(), list_name, list_name, ident, key)
        self.db.run(
            lambda c: c.execute(
                "WITH added AS (INSERT INTO subscribers (list, key, email, name, status, "
                "subscribed_at, updated_at, source, fields, tags, position) SELECT %s, %s, %s, "
                "%s, 'pending', '', %s, 'web', '{}', '{}', coalesce(max(position), 0) + 1 "
                "FROM subscribers WHERE list = %s ON CONFLICT (list, key) DO NOTHING) "
                "INSERT INTO web_address_ids (list, address_id, key) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                params,
            ),
            "cannot add the subscriber",
        )

    def suppressed(self, key: str) -> bool:
        params = {"key": key, "hash": subs.suppression_hash(key)}
        return self.db.run(
            lambda c: c.execute(f"SELECT {_SUPPRESSED}", params).fetchone()[0],
            "cannot read the suppressions",
        )

    def confirm(
        self, list_name: str, key: str, ident: str, request_id: str, row: subs.Subscriber
    ) -> bool:
        """Subscribe the row this request was made for, if it is still as the request saw it
        and not suppressed; mark the request confirmed, drop kept unsubscribes, record the
        event. One transaction; False (nothing changed) when the link is void."""
        stamp = utc_now()
        params = {
            "list": list_name,
            "key": key,
            "hash": subs.suppression_hash(key),
            "id": ident,
            "request": request_id,
            "status": row.status,
            "updated": row.updated_at,
            "stamp": stamp,
            "event": event_id(),
        }

        def work(conn: psycopg.Connection) -> bool:
            with conn.transaction():
                marked = conn.execute(
                    "UPDATE web_optin_requests SET confirmed_at = now() WHERE list = %(list)s "
                    "AND address_id = %(id)s AND request_id = %(request)s "
                    "AND confirmed_at IS NULL RETURNING 1",
                    params,
                ).fetchone()
                changed = (
                    marked
                    and conn.execute(
                        "UPDATE subscribers SET status = 'subscribed', updated_at = %(stamp)s, "
                        "source = 'web', subscribed_at = CASE WHEN btrim(subscribed_at) = '' "
                        "THEN %(stamp)s ELSE subscribed_at END WHERE list = %(list)s AND "
                        "key = %(key)s AND lower(btrim(status)) IN ('pending', 'unsubscribed') "
                        "AND lower(btrim(status)) = %(status)s AND updated_at = %(updated)s "
                        f"AND NOT {_SUPPRESSED} RETURNING 1",
                        params,
                    ).fetchone()
                )
                if not changed:
                    raise psycopg.Rollback()
                conn.execute(
                    "DELETE FROM web_unsubscribes WHERE list = %(list)s AND "
                    "(address_id = %(id)s OR key = %(key)s)",
                    params,
                )
                conn.execute(
                    "INSERT INTO web_events (source, event_id, event, email, list, occurred_at)"
                    " VALUES ('web', %(event)s, 'confirm', %(key)s, %(list)s, %(stamp)s) "
                    "ON CONFLICT DO NOTHING",
                    params,
                )
                return True
            return False

        return self.db.run(work, "cannot record the confirmation")


def mailable(key: str) -> bool:
    try:
        subs.normalize_email(key)
    except subs.InvalidEmail:
        return False  # cannot be mailed anyway; the event is still recorded
    return True


def forget(conn: psycopg.Connection, key: str) -> int:
    """Erase what serve keeps of an address (for `subscribers forget` on PostgreSQL): its
    link ids, kept unsubscribes, provider actions and events. How many rows went."""
    gone = 0
    for sql in (
        "DELETE FROM web_address_ids WHERE key = %s",
        "DELETE FROM web_unsubscribes WHERE key = %s",
        "DELETE FROM web_actions WHERE key = %s",
        "DELETE FROM web_events WHERE email = %s",
    ):
        gone += conn.execute(sql, (key,)).rowcount
    return gone
