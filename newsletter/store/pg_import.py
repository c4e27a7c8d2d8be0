"""Importing an export into a list on PostgreSQL: the rows are read and checked as on the
files store (subscribers.importing.read_import), copied into a temporary table with COPY, and
merged by one UPDATE and one INSERT ... ON CONFLICT that apply the rules of subscribers.importing:
new addresses are added (unless suppressed), existing rows only become less mailable, and
with `update` names, fields and a missing subscribed_at are refreshed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg

from newsletter.store import pg_suppressions
from newsletter.store.pg_changes import RANK, ensure_list
from newsletter.store.pg_lists import TAGS, shape
from newsletter.subscribers.importing import (
    ImportReport,
    check_format,
    custom_targets,
    read_import,
    suppressed_message,
)
from newsletter.subscribers.model import (
    COLUMNS,
    checked_tags,
    list_path,
    suppression_hash,
    utc_now,
)

_INCOMING = """
CREATE TEMP TABLE IF NOT EXISTS import_rows (
    key text, hash text, email text, name text, status text, subscribed_at text,
    source text, fields jsonb, tags text[], extra text[], line bigint, n bigint
) ON COMMIT DROP
"""
_COPY = (
    "COPY import_rows (key, hash, email, name, status, subscribed_at, source, fields, tags, "
    "extra, line, n) FROM STDIN"
)
# Rows whose address is new to the list but suppressed, by key and then by its erased hash:
# two equality joins the planner can hash, where one join on either would visit every pair.
_SUPPRESSED = """
DELETE FROM import_rows i
USING suppressions s
WHERE s.key = i.{0}
  AND NOT EXISTS (SELECT 1 FROM subscribers x WHERE x.list = %(list)s AND x.key = i.key)
RETURNING i.line, s.reason
"""
# The status an existing row ends with (subscribers.importing's _merge_row): the file's when
# less mailable, pending -> subscribed with --update, else its own (an unknown one stays).
_TARGET = f"""(CASE
    WHEN x.status NOT IN ('subscribed', 'pending', 'unsubscribed', 'bounced', 'complained')
        THEN x.status
    WHEN {RANK.format("i.status")} > {RANK.format("x.status")} THEN i.status
    WHEN %(update)s AND x.status = 'pending' AND i.status = 'subscribed' THEN 'subscribed'
    ELSE x.status END)"""
# The tags an existing row gains, in the file's order: the file's own and --tag's with
# `update`, else --tag's only (subscribers.importing._merge_row).
_NEW_TAGS = """ARRAY(SELECT t FROM unnest(CASE WHEN %(update)s THEN i.tags ELSE i.extra END)
    WITH ORDINALITY AS u(t, o) WHERE t <> ALL(x.tags) ORDER BY o)"""
# Existing rows: an UPDATE that touches (and so locks) only the rows it changes, so an
# unsubscribe of any other address in the file is not held up until the import commits.
_UPDATE = f"""
UPDATE subscribers x SET
    status = {_TARGET},
    source = CASE WHEN {_TARGET} <> x.status THEN i.source ELSE x.source END,
    subscribed_at = CASE
        WHEN {_TARGET} <> x.status AND {_TARGET} = 'subscribed' AND btrim(x.subscribed_at) = ''
            THEN coalesce(nullif(i.subscribed_at, ''), %(stamp)s)
        WHEN %(update)s AND btrim(x.subscribed_at) = '' AND i.subscribed_at <> ''
            THEN i.subscribed_at
        ELSE x.subscribed_at END,
    name = CASE WHEN %(update)s AND i.name <> '' THEN i.name ELSE x.name END,
    fields = CASE WHEN %(update)s THEN x.fields || i.fields ELSE x.fields END,
    tags = x.tags || {_NEW_TAGS},
    updated_at = %(stamp)s
FROM import_rows i
WHERE x.list = %(list)s AND x.key = i.key
  AND ({_TARGET} <> x.status
       OR cardinality({_NEW_TAGS}) > 0
       OR (%(update)s AND (
            (i.name <> '' AND i.name <> x.name)
            OR NOT x.fields @> i.fields
            OR (btrim(x.subscribed_at) = '' AND i.subscribed_at <> ''))))
"""
# New addresses, after the list's last row in the file's order; one added meanwhile by
# someone else (`subscribers add`, the subscribe form) is kept as it is.
_INSERT = """
INSERT INTO subscribers (list, key, email, name, status, subscribed_at, updated_at, source,
                         fields, tags, position)
SELECT %(list)s, i.key, i.email, i.name, i.status, i.subscribed_at, %(stamp)s, i.source,
       i.fields, i.tags, %(base)s + i.n
FROM import_rows i
WHERE NOT EXISTS (SELECT 1 FROM subscribers x WHERE x.list = %(list)s AND x.key = i.key)
ORDER BY i.n
ON CONFLICT (list, key) DO NOTHING
"""


def import_file(
    conn: psycopg.Connection,
    list_name: str,
    file: Path,
    *,
    format: str = "auto",
    mapping: Mapping[str, str] | None = None,
    update: bool = False,
    check_deliverability: bool = False,
    tags: Sequence[str] = (),
) -> ImportReport:
    """As subscribers.import_file, into a list in the store (the caller commits)."""
    extra_tags = checked_tags(tags)
    check_format(format)
    list_path(Path("."), list_name)  # the same rules for names
    known = shape(conn, list_name)
    existing = custom_targets(known.columns if known else ())
    got = read_import(file, format, mapping, existing, check_deliverability, extra_tags)
    custom = dict.fromkeys(name for new in got.rows.values() for name in new.fields)
    if any(new.tags for new in got.rows.values()):
        custom[TAGS] = None
    ensure_list(conn, list_name, (*COLUMNS, *custom))  # creates and locks the list
    conn.execute(_INCOMING)
    conn.execute("TRUNCATE import_rows")
    with conn.cursor().copy(_COPY) as copy:
        copy.set_types(["text"] * 8 + ["text[]", "text[]", "int8", "int8"])
        for n, new in enumerate(got.rows.values(), 1):
            copy.write_row(
                (
                    new.key,
                    suppression_hash(new.key),
                    new.email,
                    new.name,
                    new.status,
                    new.subscribed_at,
                    new.source,
                    json.dumps(dict(new.fields), ensure_ascii=False),
                    list(new.tags),
                    list(new.extra_tags),
                    new.line,
                    n,
                )
            )
    conn.execute("ANALYZE import_rows")  # a temporary table has no statistics until asked
    params = {"list": list_name, "update": update, "stamp": utc_now()}
    for column in ("key", "hash"):  # the address's own entry first, as the files store
        for line, reason in conn.execute(_SUPPRESSED.format(column), params).fetchall():
            message = suppressed_message(reason.strip() or "suppressed")
            got.rejects[line] = message.replace(
                "in subscribers/suppressions.csv", f"in {pg_suppressions.WHERE}"
            )
    present = conn.execute(
        "SELECT count(*) FROM import_rows i JOIN subscribers x "
        "ON x.list = %(list)s AND x.key = i.key",
        params,
    ).fetchone()[0]
    params["base"] = conn.execute(
        "SELECT coalesce(max(position), 1) FROM subscribers WHERE list = %s", (list_name,)
    ).fetchone()[0]
    updated = conn.execute(_UPDATE, params).rowcount
    added = conn.execute(_INSERT, params).rowcount
    suppressed = pg_suppressions.add_suppressions(conn, got.suppressions())
    return got.report(list_name, file, (added, updated, present - updated), suppressed)
