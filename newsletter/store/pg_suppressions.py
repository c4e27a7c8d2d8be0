"""Suppressions on PostgreSQL: the `suppressions` table, as subscribers/suppressions.csv.

Keys are email_key(address), or the sha256: hash `forget` leaves of an erased one; the first
entry for a key wins, as in the file. Every function takes an open connection and leaves the
transaction to its caller.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from newsletter.errors import SubscriberError
from newsletter.subscribers.model import suppression_hash, utc_now
from newsletter.subscribers.suppressions import checked_entries

WHERE = "the store's suppressions"


def suppression_reasons(conn: psycopg.Connection) -> dict[str, str]:
    """Suppressed keys and erased hashes with their reasons."""
    rows = conn.execute("SELECT key, reason FROM suppressions ORDER BY position")
    return {key: reason.strip() or "suppressed" for key, reason in rows}


def reason_for(conn: psycopg.Connection, key: str) -> str | None:
    """Why one key is suppressed (by itself or by its erased hash), or None."""
    row = conn.execute(
        "SELECT reason FROM suppressions WHERE key = %s OR key = %s ORDER BY key = %s DESC LIMIT 1",
        (key, suppression_hash(key), key),
    ).fetchone()
    return None if row is None else (row[0].strip() or "suppressed")


def add_suppressions(conn: psycopg.Connection, entries: Iterable[tuple[str, str]]) -> int:
    """Suppress several addresses in one statement; returns how many were new."""
    wanted = checked_entries(entries)
    if not wanted:
        return 0
    keys = list(wanted)
    stamp = utc_now()
    cur = conn.execute(
        """
        INSERT INTO suppressions (key, email, reason, at)
        SELECT w.key, w.email, w.reason, %s
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
             WITH ORDINALITY AS w(key, hash, email, reason, n)
        WHERE NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.key IN (w.key, w.hash))
        ORDER BY w.n
        ON CONFLICT (key) DO NOTHING
        """,
        (
            stamp,
            keys,
            [suppression_hash(k) for k in keys],
            [wanted[k][0] for k in keys],
            [wanted[k][1] for k in keys],
        ),
    )
    return cur.rowcount


def refuse_suppressed(conn: psycopg.Connection, key: str, email: str) -> None:
    reason = reason_for(conn, key)
    if reason == "erased":
        raise SubscriberError(f"{email} was erased with `forget`; it cannot be added again")
    if reason:
        raise SubscriberError(
            f"{email} is suppressed ({reason}) in {WHERE}; "
            "remove it there first if they really asked to be mailed again"
        )


def erase(conn: psycopg.Connection, key: str) -> None:
    """Replace the plain address with its hash, so an erased address is still never mailed."""
    digest = suppression_hash(key)
    conn.execute("DELETE FROM suppressions WHERE key = %s", (key,))
    conn.execute(
        "INSERT INTO suppressions (key, email, reason, at) VALUES (%s, %s, 'erased', %s) "
        "ON CONFLICT (key) DO NOTHING",
        (digest, digest, utc_now()),
    )


def suppression_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM suppressions").fetchone()[0]
