"""Segments on the PostgreSQL store: a list's columns, and its rows in a segment, in one query.

Over the store's `subscribers` table (list, key, email, name, status, subscribed_at,
updated_at, source, fields jsonb, tags text[], position). The filtering is PostgreSQL's: a
segment is one WHERE condition (sql.py), never a loop over the rows here.
"""

from __future__ import annotations

from newsletter.segments import Segment, check_columns
from newsletter.subscribers.model import COLUMNS, STATUSES


def columns(conn, list_name: str) -> list[str]:
    """The columns a segment may name: the known ones and every custom field the list holds."""
    rows = conn.execute(
        "SELECT DISTINCT jsonb_object_keys(fields) AS name FROM subscribers "
        "WHERE list = %s AND jsonb_typeof(fields) = 'object' ORDER BY name",
        (list_name,),
    ).fetchall()
    return [*COLUMNS, *(name for (name,) in rows if name.lower() not in COLUMNS)]


def checked(conn, list_name: str, segment: Segment) -> Segment:
    """The segment, once it names only columns the list has (SegmentError otherwise)."""
    from newsletter.segments import SegmentError

    try:
        check_columns(segment.node, columns(conn, list_name))
    except SegmentError as exc:
        raise SegmentError(exc.message, where="--segment") from None
    return segment


def where(list_name: str, segment: Segment | None) -> tuple[str, list[str]]:
    """`list = %s AND (segment)`: the condition for a list's rows in a segment, and parameters."""
    if segment is None:
        return "list = %s", [list_name]
    condition, params = segment.sql()
    return f"list = %s AND {condition}", [list_name, *params]


def count(conn, list_name: str, segment: Segment | None = None) -> dict[str, int]:
    """Rows by status, as subscribers.count answers for a CSV list."""
    condition, params = where(list_name, segment)
    counts = dict.fromkeys(STATUSES, 0)
    for status, number in conn.execute(
        f"SELECT coalesce(status, ''), count(*) FROM subscribers WHERE {condition} GROUP BY 1",
        params,
    ).fetchall():
        key = status.strip().lower() or "subscribed"
        key = key if key in counts else "invalid"
        counts[key] = counts.get(key, 0) + number
    return counts
