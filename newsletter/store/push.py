"""Moving a workspace between the files store and PostgreSQL: `store push` and `store pull`.

Push is a list of per-domain pushers, each `(conn, config) -> str` (one summary line), run in
one transaction: lists (custom fields and row order included) and suppressions (erased
hashes included) here; the send ledger, events and links add theirs to PUSHERS. Pushing is
idempotent: a row already in the store as the file has it is left alone, and a second push
says nothing changed. Rows only in the store (say, subscribed through `serve`) are kept.

Pull writes every list (and the suppressions) back as CSV, atomically, so push then pull
gives back the same bytes, with this normalisation: email, name and dates lose surrounding
spaces, a status is lower-cased (an empty one becomes "subscribed"), a `tags` cell is
written as its tags joined by "," and values are quoted only where CSV needs it; blank
lines are dropped. A file the files store wrote is already in that form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg

from newsletter.config import Config
from newsletter.errors import SubscriberError
from newsletter.files import make_folder
from newsletter.store import pg_lists
from newsletter.store.pg_changes import split_tags
from newsletter.subscribers.csvfile import open_list, status_of
from newsletter.subscribers.model import (
    SUPPRESSION_COLUMNS,
    display,
    email_key,
    list_names,
    list_path,
    suppressions_path,
)
from newsletter.subscribers.store import Writer, _locked, atomic_write
from newsletter.subscribers.suppressions import suppression_key

_ROWS = """
CREATE TEMP TABLE IF NOT EXISTS push_rows (
    key text, email text, name text, status text, subscribed_at text, updated_at text,
    source text, fields jsonb, tags text[], position bigint
) ON COMMIT DROP
"""
_FIELDS = "email, name, status, subscribed_at, updated_at, source, fields, tags, position"
_UPSERT = f"""
WITH up AS (
    INSERT INTO subscribers (list, key, {_FIELDS})
    SELECT %(list)s, key, {_FIELDS} FROM push_rows
    ON CONFLICT (list, key) DO UPDATE SET
        email = EXCLUDED.email, name = EXCLUDED.name, status = EXCLUDED.status,
        subscribed_at = EXCLUDED.subscribed_at, updated_at = EXCLUDED.updated_at,
        source = EXCLUDED.source, fields = EXCLUDED.fields, tags = EXCLUDED.tags,
        position = EXCLUDED.position
    WHERE ({", ".join(f"subscribers.{c}" for c in _FIELDS.split(", "))})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _FIELDS.split(", "))})
    RETURNING xmax = 0 AS added
)
SELECT count(*) FILTER (WHERE added), count(*) FILTER (WHERE NOT added) FROM up
"""


def push_lists(conn: psycopg.Connection, config: Config) -> str:
    """Copy every list file into the store; one line saying what changed."""
    folder = config.subscribers_dir
    parts, changed = [], False
    for name in list_names(folder):
        rows, added, updated, kept, reshaped = push_list(conn, list_path(folder, name), name)
        changed = changed or added or updated or reshaped
        part = f"{name} {rows} rows ({added} added, {updated} updated)"
        if kept:
            part += f", {kept} only in the store kept"
        parts.append(part)
    if not parts:
        return f"lists: none in {display(folder)}/"
    return "lists: " + "; ".join(parts) + ("" if changed else ": nothing changed")


def push_list(conn: psycopg.Connection, path: Path, name: str) -> tuple[int, int, int, int, bool]:
    """(rows in the file, added, updated, rows only in the store, whether the header changed)."""
    conn.execute(_ROWS)
    conn.execute("TRUNCATE push_rows")
    with open_list(path) as src:
        cols = src.columns
        e, n, s, sa, ua, so = cols.standard
        custom = [(c, i) for c, i in cols.custom if c != pg_lists.TAGS]
        tags_at = cols.index(pg_lists.TAGS)
        rows = 0
        with conn.cursor().copy(f"COPY push_rows (key, {_FIELDS}) FROM STDIN") as copy:
            copy.set_types(["text"] * 7 + ["text", "text[]", "int8"])
            for line, values in src.rows:
                email = values[e].strip()
                if not email:
                    raise SubscriberError(
                        "row without an email address: the store keeps rows by address; "
                        "fix it (see `newsletter subscribers validate`) and push again",
                        where=f"{src.where}:{line}",
                    )
                fields = {c: values[i] for c, i in custom if values[i]}
                copy.write_row(
                    (
                        email_key(email),
                        email,
                        values[n].strip(),
                        status_of(values[s]),
                        values[sa].strip(),
                        values[ua].strip(),
                        values[so],
                        json.dumps(fields, ensure_ascii=False),
                        split_tags(values[tags_at]),
                        line,
                    )
                )
                rows += 1
        shape = pg_lists.ListShape(name, cols.names, src.bom, src.newline)
        where = src.where
    twice = conn.execute(
        "SELECT min(email), min(position), max(position) FROM push_rows GROUP BY key "
        "HAVING count(*) > 1 ORDER BY 2 LIMIT 1"
    ).fetchone()
    if twice is not None:
        raise SubscriberError(
            f"duplicate of line {twice[1]}: {twice[0]}; the store keeps one row per address: "
            "remove one (see `newsletter subscribers validate`) and push again",
            where=f"{where}:{twice[2]}",
        )
    reshaped = (
        conn.execute(
            "INSERT INTO subscriber_lists (name, columns, bom, newline) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET columns = EXCLUDED.columns, bom = EXCLUDED.bom, "
            "newline = EXCLUDED.newline WHERE (subscriber_lists.columns, subscriber_lists.bom, "
            "subscriber_lists.newline) IS DISTINCT FROM (EXCLUDED.columns, EXCLUDED.bom, "
            "EXCLUDED.newline)",
            (name, list(shape.columns), shape.bom, shape.newline),
        ).rowcount
        > 0
    )
    added, updated = conn.execute(_UPSERT, {"list": name}).fetchone()
    kept = conn.execute(
        "SELECT count(*) FROM subscribers s WHERE s.list = %s "
        "AND NOT EXISTS (SELECT 1 FROM push_rows p WHERE p.key = s.key)",
        (name,),
    ).fetchone()[0]
    return rows, added, updated, kept, reshaped


def push_suppressions(conn: psycopg.Connection, config: Config) -> str:
    """Copy subscribers/suppressions.csv into the store (the first entry for a key wins)."""
    path = suppressions_path(config.subscribers_dir)
    if not path.is_file():
        return "suppressions: no file to push"
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS push_supp (key text, email text, reason text, "
        "at text, n bigint) ON COMMIT DROP"
    )
    conn.execute("TRUNCATE push_supp")
    rows = 0
    with open_list(path, SUPPRESSION_COLUMNS) as src:
        e, r, at = (src.columns.index(c) for c in SUPPRESSION_COLUMNS)
        with conn.cursor().copy("COPY push_supp FROM STDIN") as copy:
            for line, values in src.rows:
                if values[e].strip():
                    email = values[e].strip()
                    copy.write_row((suppression_key(email), email, values[r], values[at], line))
                    rows += 1
    added = conn.execute(
        "INSERT INTO suppressions (key, email, reason, at) "
        "SELECT key, email, reason, at FROM push_supp ORDER BY n ON CONFLICT (key) DO NOTHING"
    ).rowcount
    if not added:
        return f"suppressions: {rows} entries: nothing changed"
    return f"suppressions: {rows} entries ({added} added)"


Pusher = Callable[[psycopg.Connection, Config], str]


def _later(module: str, name: str) -> Pusher:
    """A pusher from another package, imported when it runs (they import this package)."""

    def run(conn: psycopg.Connection, config: Config) -> str:
        import importlib

        return getattr(importlib.import_module(module), name)(conn, config)

    run.__name__ = name
    return run


# Lists first: the web's opt-outs and the ledger refer to the rows they create.
PUSHERS: list[Pusher] = [
    push_lists,
    push_suppressions,
    _later("newsletter.sending.pgpush", "push_ledger"),
    _later("newsletter.web.pgpush", "push_events"),
    _later("newsletter.web.pgpush", "push_optin"),
    _later("newsletter.web.pgpush", "push_optouts"),
    _later("newsletter.tracking.pglinks", "push_links"),
]


def push(conn: psycopg.Connection, config: Config) -> list[str]:
    """Run every pusher in one transaction (all or nothing); their summary lines."""
    with conn.transaction():
        return [pusher(conn, config) for pusher in PUSHERS]


def pull(conn: psycopg.Connection, config: Config) -> list[str]:
    """Write every list in the store, and the suppressions, to CSV files in subscribers/."""
    folder = make_folder(config.subscribers_dir, private=True)
    lines = []
    with conn.transaction():
        for name in pg_lists.list_names(conn):
            shape = pg_lists.shape(conn, name)
            path = list_path(folder, name)
            with _locked(path), atomic_write(path, bom=shape.bom) as out:
                written = pg_lists.write_csv(conn, shape, out.file)
            lines.append(f"{name}: {written} rows -> {display(path)}")
        found = conn.execute("SELECT email, reason, at FROM suppressions ORDER BY position")
        entries = found.fetchall()
        if entries:
            path = suppressions_path(folder)
            with _locked(path), atomic_write(path) as out:
                writer = Writer(out.file, "\n")
                writer.writerow(SUPPRESSION_COLUMNS)
                for entry in entries:
                    writer.writerow(entry)
            lines.append(f"suppressions: {len(entries)} entries -> {display(path)}")
    return lines or ["nothing in the store to pull"]
