"""Subscriber lists on PostgreSQL, the changing side: add, remove, set or downgrade a status,
downgrade many, forget. The same rules and messages as newsletter/subscribers/changes.py;
each change is one short transaction (the caller commits). A status change (remove, an
unsubscribe, a bounce, a confirm) locks only its row, so it never waits for an import of the
same list; adds and imports take the list's row in turn, as writers of a CSV take its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import psycopg
from psycopg.types.json import Jsonb

from newsletter.errors import SubscriberError
from newsletter.store import pg_suppressions
from newsletter.store.pg_lists import TAGS, existing, list_path_checked
from newsletter.subscribers.changes import new_subscriber, refuse_unconfirmed
from newsletter.subscribers.model import (
    COLUMNS,
    STATUS_RANK,
    STATUSES,
    Subscriber,
    checked_tags,
    key_of,
    known_status,
    utc_now,
)
from newsletter.subscribers.store import check_value

# STATUS_RANK in SQL: an unknown status ranks as "may be mailed", as status_of/.get(…, 0) do.
RANK = (
    "CASE {0} WHEN 'unsubscribed' THEN 1 WHEN 'bounced' THEN 2 WHEN 'complained' THEN 3 ELSE 0 END"
)


def ensure_list(
    conn: psycopg.Connection, list_name: str, needed: Iterable[str] = (), *, lock: bool = True
) -> None:
    """Create the list if new and add any column it lacks to its header; with `lock`, hold
    the list for this transaction, so adds and imports of one list take turns."""
    list_path_checked(list_name)
    conn.execute(
        "INSERT INTO subscriber_lists (name, columns) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (list_name, list(COLUMNS)),
    )
    # NO KEY UPDATE: rows being inserted into the list (their foreign key) are not held up.
    hold = " FOR NO KEY UPDATE" if lock else ""
    columns = conn.execute(
        f"SELECT columns FROM subscriber_lists WHERE name = %s{hold}", (list_name,)
    ).fetchone()[0]
    have = {c.lower() if c.lower() in COLUMNS else c for c in columns}
    extra = [
        c for c in dict.fromkeys(needed) if (c.lower() if c.lower() in COLUMNS else c) not in have
    ]
    if extra:
        conn.execute(
            "UPDATE subscriber_lists SET columns = columns || %s::text[] WHERE name = %s",
            (extra, list_name),
        )


def split_tags(cell: str) -> list[str]:
    return [t.strip() for t in cell.split(",") if t.strip()]


def insert(conn: psycopg.Connection, list_name: str, key: str, sub: Subscriber) -> None:
    fields = dict(sub.fields)
    tags = list(dict.fromkeys((*sub.tags, *split_tags(fields.pop(TAGS, "")))))
    conn.execute(
        "INSERT INTO subscribers (list, key, email, name, status, subscribed_at, updated_at, "
        "source, fields, tags, position) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "(SELECT coalesce(max(position), 1) + 1 FROM subscribers WHERE list = %s))",
        (
            list_name,
            key,
            sub.email,
            sub.name,
            sub.status,
            sub.subscribed_at,
            sub.updated_at,
            sub.source,
            Jsonb(fields),
            tags,
            list_name,
        ),
    )


def add_subscriber(
    conn: psycopg.Connection,
    list_name: str,
    email: str,
    *,
    name: str = "",
    fields: Mapping[str, str] | None = None,
    status: str = "subscribed",
    source: str = "",
    resubscribe: bool = False,
    check_deliverability: bool = False,
) -> str:
    """As subscribers.add_subscriber: 'added', 'updated' or 'unchanged'."""
    new, key = new_subscriber(email, name, fields, status, source, check_deliverability)
    stamp = new.updated_at
    ensure_list(conn, list_name, (*COLUMNS, *new.fields))
    if status in ("subscribed", "pending"):
        pg_suppressions.refuse_suppressed(conn, key, new.email)
    row = conn.execute(
        "SELECT status, name, subscribed_at, fields, tags, position FROM subscribers "
        "WHERE list = %s AND key = %s FOR UPDATE",
        (list_name, key),
    ).fetchone()
    if row is None:
        insert(conn, list_name, key, new)
        return "added"
    current, old_name, subscribed_at, old_fields, old_tags, position = row
    if status == "subscribed" and not resubscribe:
        refuse_unconfirmed(new.email, current, list_name, position)
    target = "subscribed" if status == "subscribed" and resubscribe else current
    values = {"status": current, "subscribed_at": subscribed_at, "name": old_name}
    fields_now, tags_now = dict(old_fields), list(old_tags)
    if target != current:
        values["status"] = target
        values["subscribed_at"] = subscribed_at.strip() or stamp
    wanted = dict(new.fields)
    if TAGS in wanted:
        tags_now = split_tags(wanted.pop(TAGS))
    if new.name:
        values["name"] = new.name
    fields_now.update(wanted)
    changed = (
        target != current
        or values["name"].strip() != old_name.strip()
        or fields_now != old_fields
        or tags_now != list(old_tags)
    )
    if not changed:
        return "unchanged"
    conn.execute(
        "UPDATE subscribers SET status = %s, subscribed_at = %s, name = %s, fields = %s, "
        "tags = %s, updated_at = %s, source = CASE WHEN %s THEN %s ELSE source END "
        "WHERE list = %s AND key = %s",
        (
            values["status"],
            values["subscribed_at"],
            values["name"],
            Jsonb(fields_now),
            tags_now,
            stamp,
            target != current and bool(new.source),
            new.source,
            list_name,
            key,
        ),
    )
    return "updated"


def tag_subscriber(
    conn: psycopg.Connection,
    list_name: str,
    email: str,
    tags: Sequence[str],
    *,
    remove: bool = False,
) -> tuple[str, ...] | None:
    """As subscribers.tag_subscriber: the address's tags after, None if nothing changed."""
    wanted = checked_tags(tags)
    if not wanted:
        raise SubscriberError("no tags given")
    existing(conn, list_name)
    key = key_of(email)
    row = conn.execute(
        "SELECT tags FROM subscribers WHERE list = %s AND key = %s FOR UPDATE", (list_name, key)
    ).fetchone()
    if row is None:
        raise SubscriberError(f"{email.strip()} is not in list {list_name!r}")
    before = tuple(row[0])
    if remove:
        after = tuple(tag for tag in before if tag not in wanted)
    else:
        after = tuple(dict.fromkeys((*before, *wanted)))
    if after == before:
        return None
    ensure_list(conn, list_name, (TAGS,), lock=False)
    conn.execute(
        "UPDATE subscribers SET tags = %s, updated_at = %s WHERE list = %s AND key = %s",
        (list(after), utc_now(), list_name, key),
    )
    return after


def _update_status(
    conn: psycopg.Connection,
    list_name: str,
    email: str,
    status: str,
    *,
    source: str,
    only: Sequence[str] | None = None,
) -> tuple[int, int, str]:
    """(rows found, rows changed, status the row had), as changes._update_status."""
    known_status(status)
    check_value("source", source)
    existing(conn, list_name)
    key = key_of(email)
    ensure_list(conn, list_name, ("status", "updated_at", "source", "subscribed_at"), lock=False)
    if status in ("subscribed", "pending"):
        pg_suppressions.refuse_suppressed(conn, key, email.strip())
    row = conn.execute(
        "SELECT status FROM subscribers WHERE list = %s AND key = %s FOR UPDATE",
        (list_name, key),
    ).fetchone()
    if row is None:
        return 0, 0, ""
    previous = row[0]
    if previous == status or (only is not None and previous not in only):
        return 1, 0, previous
    stamp = utc_now()
    conn.execute(
        "UPDATE subscribers SET status = %s, updated_at = %s, "
        "source = CASE WHEN %s <> '' THEN %s ELSE source END, "
        "subscribed_at = CASE WHEN %s = 'subscribed' AND btrim(subscribed_at) = '' "
        "THEN %s ELSE subscribed_at END WHERE list = %s AND key = %s",
        (status, stamp, source, source, status, stamp, list_name, key),
    )
    return 1, 1, previous


def set_status(
    conn: psycopg.Connection, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    return _update_status(conn, list_name, email, status, source=source)[1] > 0


def remove_subscriber(
    conn: psycopg.Connection, list_name: str, email: str, *, source: str = ""
) -> tuple[bool, str]:
    found, changed, previous = _update_status(
        conn, list_name, email, "unsubscribed", source=source, only=("subscribed", "pending")
    )
    if not found:
        raise SubscriberError(f"{email.strip()} is not in list {list_name!r}")
    return changed > 0, previous


def downgrade_status(
    conn: psycopg.Connection, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    """Move this address's row to a less mailable status, never back up."""
    known_status(status)
    only = tuple(s for s in STATUSES if STATUS_RANK[s] < STATUS_RANK[status])
    return _update_status(conn, list_name, email, status, source=source, only=only)[1] > 0


def downgrade_many(
    conn: psycopg.Connection,
    list_name: str,
    wanted: Callable[[], Mapping[str, tuple[str, str]]],
) -> int:
    """As subscribers.downgrade_many, in one statement: rows only move to less mailable."""
    existing(conn, list_name)
    ensure_list(conn, list_name, ("status", "updated_at", "source"), lock=False)
    targets = dict(wanted())  # nothing to wait for first: each row is locked as it changes
    if not targets:
        return 0
    keys = list(targets)
    cur = conn.execute(
        f"""
        UPDATE subscribers s SET status = w.status, updated_at = %s,
            source = CASE WHEN w.source <> '' THEN w.source ELSE s.source END
        FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(key, status, source)
        WHERE s.list = %s AND s.key = w.key
          AND {RANK.format("s.status")} < {RANK.format("w.status")}
        """,
        (
            utc_now(),
            keys,
            [targets[k][0] for k in keys],
            [targets[k][1] for k in keys],
            list_name,
        ),
    )
    return cur.rowcount


def forget(conn: psycopg.Connection, email: str) -> dict[str, int]:
    """GDPR erasure: drop the address from every list, keep only its hash; rows per list."""
    key = key_of(email)
    pg_suppressions.erase(conn, key)
    removed: dict[str, int] = {}
    # (list, key) pairs for every list, so the primary key finds the rows: no index on key
    # alone to keep up on every import.
    names = [name for (name,) in conn.execute("SELECT name FROM subscriber_lists")]
    erased = conn.execute(
        "DELETE FROM subscribers WHERE list = ANY(%s) AND key = %s RETURNING list", (names, key)
    )
    for (list_name,) in erased:
        removed[list_name] = removed.get(list_name, 0) + 1
    return dict(sorted(removed.items()))
