"""Subscriber lists on PostgreSQL, the reading side: names, count, page, find, export,
validate and the streaming `sendable` that a send walks.

Rows come back as the same Subscriber objects the CSV reader makes (`line` is the row's
position, which for a pushed list is its line in the CSV), and the same rules apply: see
newsletter/subscribers/lists.py and sending.py. Large reads go through a server-side cursor
fetched in chunks, so memory stays flat however long the list. Every function takes an open
connection and leaves the transaction to its caller (changes are in pg_changes).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import psycopg

from newsletter.errors import SubscriberError
from newsletter.segments import Segment
from newsletter.segments.pg import where as segment_where
from newsletter.store.pg_suppressions import suppression_reasons
from newsletter.subscribers.csvfile import check_row
from newsletter.subscribers.lists import Page, _long_name
from newsletter.subscribers.model import (
    COLUMNS,
    HASH_PREFIX,
    NAME_MAX,
    STATUSES,
    InvalidEmail,
    Problem,
    Subscriber,
    known_status,
    list_path,
    normalize_email,
)
from newsletter.subscribers.sending import SendableStats, Skipped, Sorting, Withdrawn
from newsletter.subscribers.store import Writer

CHUNK = 5_000  # rows per round trip of a server-side cursor
TAGS = "tags"  # the CSV column whose cell is the tags array
_cursors = itertools.count()  # names for server-side cursors, unique within a connection
ROW = "email, name, status, subscribed_at, updated_at, source, fields, tags, position, key"


@dataclass(frozen=True)
class ListShape:
    """What a list file's header and encoding were: written back by export and pull."""

    name: str
    columns: tuple[str, ...]
    bom: bool = False
    newline: str = "\n"


def where_of(list_name: str) -> str:
    """How messages name a list in the store (a file's place in the files store)."""
    return f"{list_name} (PostgreSQL)"


def list_names(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM subscriber_lists ORDER BY name")]


def shape(conn: psycopg.Connection, list_name: str) -> ListShape | None:
    row = conn.execute(
        "SELECT columns, bom, newline FROM subscriber_lists WHERE name = %s", (list_name,)
    ).fetchone()
    return None if row is None else ListShape(list_name, tuple(row[0]), row[1], row[2])


def existing(conn: psycopg.Connection, list_name: str) -> ListShape:
    """The list's shape, or a clear error naming the known lists."""
    list_path_checked(list_name)
    found = shape(conn, list_name)
    if found is None:
        known = ", ".join(list_names(conn)) or "none yet"
        raise SubscriberError(f"no list {list_name!r} in the PostgreSQL store (lists: {known})")
    return found


def list_path_checked(list_name: str) -> None:
    """The files store's rules for a list name (letters, digits, '-', '_'; not 'suppressions')."""
    list_path(Path("."), list_name)


def to_subscriber(row: Sequence) -> Subscriber:
    email, name, status, subscribed_at, updated_at, source, fields, tags, position, key = row
    values = {name: value for name, value in fields.items() if value}  # as a CSV row's
    return Subscriber(
        email, name, status, subscribed_at, updated_at, source, values, position, key, tuple(tags)
    )


def rows(
    conn: psycopg.Connection,
    list_name: str,
    statuses: Sequence[str] = (),
    segment: Segment | None = None,
) -> Iterator[tuple]:
    """The list's rows in order (those in `segment`: one WHERE, PostgreSQL's filtering)
    through a server-side cursor (needs a transaction)."""
    condition, params = segment_where(list_name, segment)
    query = f"SELECT {ROW} FROM subscribers WHERE {condition}"
    if statuses:
        query += " AND status = ANY(%s)"
        params.append(list(statuses))
    with conn.cursor(name=f"rows_{next(_cursors)}") as cur:
        cur.itersize = CHUNK
        cur.execute(query + " ORDER BY position, key", params)
        yield from cur


def count(conn: psycopg.Connection, list_name: str) -> dict[str, int]:
    """Rows by status ('invalid' counts unknown statuses), as the files store's count."""
    existing(conn, list_name)
    counts = dict.fromkeys(STATUSES, 0)
    found = conn.execute(
        "SELECT status, count(*) FROM subscribers WHERE list = %s GROUP BY status", (list_name,)
    )
    for status, number in found:
        if status in counts:
            counts[status] += number
        else:
            counts["invalid"] = counts.get("invalid", 0) + number
    return counts


def page(
    conn: psycopg.Connection,
    list_name: str,
    *,
    status: str | None = None,
    number: int = 1,
    per_page: int = 50,
    segment: Segment | None = None,
) -> Page:
    existing(conn, list_name)
    number = max(number, 1)
    where, params = segment_where(list_name, segment)
    if status:
        where += " AND status = %s"
        params.append(status)
    total = conn.execute(f"SELECT count(*) FROM subscribers WHERE {where}", params).fetchone()[0]
    found = conn.execute(
        f"SELECT {ROW} FROM subscribers WHERE {where} ORDER BY position, key LIMIT %s OFFSET %s",
        [*params, per_page, (number - 1) * per_page],
    )
    return Page([to_subscriber(r) for r in found], total, number, per_page)


def find(conn: psycopg.Connection, list_name: str, email: str) -> Subscriber | None:
    """The row with this address (by key, or the address as written, case-insensitive)."""
    from newsletter.subscribers.model import email_key

    wanted = email.strip().lower()
    row = conn.execute(
        f"SELECT {ROW} FROM subscribers WHERE list = %s AND (key = %s OR lower(email) = %s) "
        "ORDER BY position LIMIT 1",
        (list_name, email_key(email), wanted),
    ).fetchone()
    return None if row is None else to_subscriber(row)


def cells(shape: ListShape, row: Sequence) -> list[str]:
    """A stored row as the CSV cells of its list's header."""
    email, name, status, subscribed_at, updated_at, source, fields, tags, _, _ = row
    standard = dict(
        zip(COLUMNS, (email, name, status, subscribed_at, updated_at, source), strict=True)
    )
    out = []
    for column in shape.columns:
        lowered = column.lower()
        if lowered in standard:
            out.append(standard[lowered])
        elif column == TAGS:
            out.append(",".join(tags))
        else:
            out.append(fields.get(column, ""))
    return out


def write_csv(
    conn: psycopg.Connection, shape: ListShape, out: TextIO, statuses: Sequence[str] = ()
) -> int:
    """Write the list as its CSV file looked (header, order, line ending); rows written."""
    writer = Writer(out, shape.newline)
    writer.writerow(shape.columns)
    written = 0
    for row in rows(conn, shape.name, statuses):
        writer.writerow(cells(shape, row))
        written += 1
    return written


def validate(
    conn: psycopg.Connection, list_name: str | None = None, *, check_deliverability: bool = False
) -> list[Problem]:
    """Every problem in one list, or in all lists and the suppressions."""
    names = [existing(conn, list_name).name] if list_name is not None else list_names(conn)
    problems: list[Problem] = []
    for name in names:
        where = where_of(name)
        for email, nm, status, sa, ua, *_rest, position, _ in rows(conn, name):
            _, found = check_row(email, nm, status, (sa, ua), check_deliverability)
            problems += [Problem(where, position, message) for message in found or ()]
            if len(nm) > NAME_MAX and len(" ".join(nm.split())) > NAME_MAX:
                problems.append(_long_name(where, position, nm))
    if list_name is None:
        problems += _validate_suppressions(conn)
    return problems


def _validate_suppressions(conn: psycopg.Connection) -> list[Problem]:
    problems = []
    where = "suppressions (PostgreSQL)"
    found = conn.execute("SELECT email, position FROM suppressions ORDER BY position")
    for email, position in found:
        if email.lower().startswith(HASH_PREFIX):
            if not re.fullmatch(r"[0-9a-f]{64}", email[len(HASH_PREFIX) :].lower()):
                problems.append(Problem(where, position, f"malformed hash {email!r}"))
            continue
        try:
            normalize_email(email)
        except InvalidEmail as exc:
            problems.append(Problem(where, position, f"invalid email address {email!r}: {exc}"))
    return problems


def check_statuses(statuses: Sequence[str]) -> None:
    for status in statuses:
        known_status(status)


def sendable(
    conn: psycopg.Connection,
    list_name: str,
    stats: SendableStats | None = None,
    withdrawn: Withdrawn | None = None,
    *,
    skip_bad_rows: bool = False,
    segment: Segment | None = None,
) -> Iterator[Subscriber | Skipped]:
    """Subscribed rows minus suppressed addresses, as subscribers.sending.sendable on a file;
    with `segment`, only its rows, chosen by PostgreSQL in the same query.

    The rows stream from a server-side cursor; a bad row (carried over from a pushed CSV)
    raises naming the list and row, or with `skip_bad_rows` is yielded as a Skipped.
    """
    existing(conn, list_name)
    # The table keeps one row per key, the key the files store would work out: memory stays
    # flat however long the list, where a CSV needs the set of keys seen so far.
    suppressed = set(suppression_reasons(conn))
    sorting = Sorting(suppressed, stats or SendableStats(), withdrawn, unique=True)
    where = where_of(list_name)
    for row in rows(conn, list_name, segment=segment):
        email, name, status, sa, ua, _, _, _, position, _ = row
        key, found = check_row(email, name, status, (sa, ua))
        if found and not skip_bad_rows:
            raise SubscriberError(found[0], where=f"{where}:{position}")
        bad = "; ".join(found) if found else None
        if sorting.left_out(key, status):
            continue
        if not key:
            yield Skipped(f"invalid:{where}:{position}", email, f"{where}:{position}", bad or "")
        elif sorting.repeated(key):
            continue
        elif bad:
            yield Skipped(key, email, f"{where}:{position}", bad)
        else:
            sub = to_subscriber(row)
            # The key as the files store works it out, should normalising have changed since
            # the row was stored.
            yield sub if sub.key == key else replace(sub, known_key=key)
    if segment is not None and stats is not None:  # as the files store counts them
        condition, params = segment.sql()
        stats.outside_segment += conn.execute(
            "SELECT count(*) FROM subscribers WHERE list = %s AND status = 'subscribed' "
            f"AND NOT ({condition})",
            [list_name, *params],
        ).fetchone()[0]
