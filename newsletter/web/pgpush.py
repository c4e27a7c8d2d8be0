"""`store push` for what `serve` kept on the files store: events, opt-in requests, the opt-out
journal. Idempotent: pushing twice adds nothing the second time.

Run it after the lists are pushed: unsubscribes and provider actions the CSV did not show yet
(the journal not folded in) are applied to the pushed rows, so nobody who opted out becomes
mailable by moving to PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg

from newsletter.config import Config
from newsletter.optouts.journal import JOURNAL_NAME
from newsletter.subscribers.model import utc_now
from newsletter.tokens import address_id, load_secret
from newsletter.web.events import EVENTS_NAME
from newsletter.web.pglists import RANK_SQL, TARGET_RANK, mailable
from newsletter.web.requests import REQUESTS_NAME

_BATCH = 10_000


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection | None]:
    if not path.is_file():
        yield None
        return
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        yield db


def push_events(conn: psycopg.Connection, config: Config) -> str:
    """Copy .newsletter/events.sqlite3 into web_events (COPY, then one INSERT ... ON CONFLICT
    DO NOTHING); a line saying what it did."""
    with _sqlite(config.state_dir / EVENTS_NAME) as db:
        if db is None:
            return "events: none kept"
        with conn.transaction():
            return _copy_events(conn, db)


def _copy_events(conn: psycopg.Connection, db: sqlite3.Connection) -> str:
    conn.execute("DROP TABLE IF EXISTS pushed_events")
    conn.execute(
        "CREATE TEMP TABLE pushed_events (source text, event_id text, event text, email text, "
        "list text, issue text, occurred_at text, received_at text, payload text) "
        "ON COMMIT DROP"
    )
    rows = db.execute(
        "SELECT source, event_id, event, email, list, issue, occurred_at, received_at, payload "
        "FROM events ORDER BY id"
    )
    total = 0
    with conn.cursor().copy("COPY pushed_events FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            total += 1
    added = conn.execute(
        "INSERT INTO web_events (source, event_id, event, email, list, issue, occurred_at, "
        "received_at, payload) SELECT source, event_id, event, email, list, issue, occurred_at,"
        " received_at::timestamptz, payload::jsonb FROM pushed_events "
        "ON CONFLICT (source, event_id) DO NOTHING"
    ).rowcount
    return f"events: {total} kept, {added} new"


def push_optin(conn: psycopg.Connection, config: Config) -> str:
    """Copy .newsletter/optin.sqlite3 into web_optin_requests (a newer request wins)."""
    with _sqlite(config.state_dir / REQUESTS_NAME) as db:
        if db is None:
            return "opt-in requests: none kept"
        rows = db.execute(
            "SELECT list, address_id, request_id, row_status, row_updated, requested_at, "
            "confirmed_at FROM requests"
        ).fetchall()
    added = 0
    with conn.transaction(), conn.cursor() as cur:
        for row in rows:
            cur.execute(
                "INSERT INTO web_optin_requests (list, address_id, request_id, row_status, "
                "row_updated, requested_at, confirmed_at) VALUES (%s, %s, %s, %s, %s, "
                "%s::timestamptz, %s::timestamptz) ON CONFLICT (list, address_id) DO UPDATE SET "
                "request_id = EXCLUDED.request_id, row_status = EXCLUDED.row_status, "
                "row_updated = EXCLUDED.row_updated, requested_at = EXCLUDED.requested_at, "
                "confirmed_at = EXCLUDED.confirmed_at "
                "WHERE web_optin_requests.requested_at < EXCLUDED.requested_at",
                row,
            )
            added += cur.rowcount
    return f"opt-in requests: {len(rows)} kept, {added} new"


def push_optouts(conn: psycopg.Connection, config: Config) -> str:
    """Copy .newsletter/optouts.sqlite3 into web_unsubscribes and web_actions, and apply what
    they withhold to the pushed `subscribers` rows (and provider suppressions)."""
    with _sqlite(config.state_dir / JOURNAL_NAME) as db:
        if db is None:
            return "opt-outs: none kept"
        unsubscribes = db.execute(
            "SELECT list, address_id, key, via, at FROM unsubscribes ORDER BY id"
        ).fetchall()
        actions = db.execute(
            "SELECT key, status, list, reason, at FROM actions WHERE applied_at IS NULL ORDER BY id"
        ).fetchall()
    keyed = _keys_of_ids(conn, config, {(u[0], u[1]) for u in unsubscribes if not u[2]})
    stamp, new = utc_now(), 0
    with conn.transaction(), conn.cursor() as cur:
        for list_name, ident, key, via, at in unsubscribes:
            key = key or keyed.get((list_name, ident))
            cur.execute(
                "INSERT INTO web_unsubscribes (list, address_id, key, via, at) VALUES "
                "(%s, %s, %s, %s, %s::timestamptz) ON CONFLICT (list, address_id) DO NOTHING",
                (list_name, ident, key, via, at),
            )
            new += cur.rowcount
            if key:
                _downgrade(cur, key, "unsubscribed", list_name, f"web:{via}", stamp)
        for key, status, list_name, reason, at in actions:
            cur.execute(
                "INSERT INTO web_actions (key, status, list, reason, at) SELECT %s, %s, %s, %s,"
                " %s::timestamptz WHERE NOT EXISTS (SELECT 1 FROM web_actions WHERE key = %s "
                "AND status = %s AND list IS NOT DISTINCT FROM %s AND at = %s::timestamptz)",
                (key, status, list_name, reason, at, key, status, list_name, at),
            )
            new += cur.rowcount
            source = (reason or "provider").partition(":")[0]
            _downgrade(cur, key, status, list_name, source, stamp)
            if reason and mailable(key):
                cur.execute(
                    "INSERT INTO suppressions (key, email, reason, at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (key, key, reason, at),
                )
    return f"opt-outs: {len(unsubscribes) + len(actions)} kept, {new} new"


def push_web(conn: psycopg.Connection, config: Config) -> list[str]:
    """Everything serve kept on the files store, after the lists: one line per part."""
    return [push(conn, config) for push in (push_events, push_optin, push_optouts)]


def _downgrade(cur, key: str, status: str, list_name: str | None, source: str, stamp: str):
    cur.execute(
        f"UPDATE subscribers SET status = %s, updated_at = %s, source = %s WHERE key = %s "
        f"AND (%s::text IS NULL OR list = %s) AND {RANK_SQL} < %s",
        (status, stamp, source, key, list_name, list_name, TARGET_RANK[status]),
    )


def _keys_of_ids(
    conn: psycopg.Connection, config: Config, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The keys of unsubscribes kept by address id only (their list could not be read far
    enough when they came): found by hashing the pushed list's keys."""
    if not wanted:
        return {}
    secret = load_secret(config.state_dir)
    found: dict[tuple[str, str], str] = {}
    for list_name in sorted({name for name, _ in wanted}):
        with conn.cursor(name="push_keys", withhold=True) as cur:
            cur.itersize = _BATCH
            cur.execute("SELECT key FROM subscribers WHERE list = %s", (list_name,))
            for (key,) in cur:
                pair = (list_name, address_id(secret, list_name, key))
                if pair in wanted:
                    found[pair] = key
    return found
