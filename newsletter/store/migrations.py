"""The PostgreSQL schema: versioned per component, applied only by `newsletter store migrate`.

Each component (lists, sends, events, ...) keeps its steps as numbered SQL files in
`newsletter/store/schema/<component>/NNN_what.sql`; `newsletter_schema` holds the version each
component is at. `migrate` applies the missing steps, each in its own transaction, under an
advisory lock so two machines migrating at once take turns. `check` runs whenever a command
opens the store: a database behind this program says to run `newsletter store migrate`, one
ahead of it (a newer newsletter migrated it) is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

import psycopg

from newsletter.errors import StoreError

_LOCK = 0x6E6C7374  # pg_advisory_xact_lock key: "nlst"
_STEP = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_META = """
CREATE TABLE IF NOT EXISTS newsletter_schema (
    component text PRIMARY KEY,
    version integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Step:
    component: str
    version: int
    name: str
    sql: str

    def __str__(self) -> str:
        return f"{self.component} {self.version}: {self.name.replace('_', ' ')}"


def steps() -> dict[str, list[Step]]:
    """Every component's steps, in version order, as shipped with this program."""
    root = files("newsletter.store") / "schema"
    found: dict[str, list[Step]] = {}
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not folder.is_dir() or folder.name.startswith(("_", ".")):
            continue
        mine = []
        for f in folder.iterdir():
            m = _STEP.match(f.name)
            if m:
                mine.append(Step(folder.name, int(m[1]), m[2], f.read_text(encoding="utf-8")))
        mine.sort(key=lambda s: s.version)
        if [s.version for s in mine] != list(range(1, len(mine) + 1)):
            raise RuntimeError(f"schema/{folder.name}: steps must be numbered 001, 002, ...")
        if mine:
            found[folder.name] = mine
    return found


def versions(conn: psycopg.Connection) -> dict[str, int]:
    """The version each component is at in this database ({} for an empty database)."""
    exists = conn.execute("SELECT to_regclass('newsletter_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    return dict(conn.execute("SELECT component, version FROM newsletter_schema").fetchall())


def pending(conn: psycopg.Connection) -> list[Step]:
    """The steps this database lacks; StoreError if it is ahead of this program."""
    known = steps()
    have = versions(conn)
    for component, version in sorted(have.items()):
        latest = len(known.get(component, []))
        if version > latest:
            raise StoreError(
                f"the database's {component} schema is at version {version}, newer than this "
                f"program's {latest}: upgrade newsletter"
            )
    return [s for comp, mine in known.items() for s in mine if s.version > have.get(comp, 0)]


def check(conn: psycopg.Connection) -> None:
    """Refuse a database this program cannot use as it is, saying what to do."""
    missing = pending(conn)
    if missing:
        parts = sorted({s.component for s in missing})
        raise StoreError(
            f"the database's schema is behind this program ({', '.join(parts)}): "
            "run `newsletter store migrate`"
        )
    conn.rollback()


def migrate(conn: psycopg.Connection) -> list[Step]:
    """Apply every missing step, each in its own transaction; return what was applied."""
    applied: list[Step] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute(_META)
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            todo = pending(conn)
            if not todo:
                return applied
            step = todo[0]
            conn.execute(step.sql)
            conn.execute(
                "INSERT INTO newsletter_schema (component, version) VALUES (%s, %s) "
                "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, "
                "applied_at = now()",
                (step.component, step.version),
            )
            applied.append(step)
