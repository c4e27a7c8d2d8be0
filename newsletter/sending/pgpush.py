"""`newsletter store push`'s part for the send ledger: .newsletter/ledger.sqlite3 into PostgreSQL.

Idempotent: a run is known by its origin (its id and start in the file), a recipient row by
(issue, key); what the database already has is left as it is, so pushing twice copies
nothing the second time, and a send already recorded in PostgreSQL is never overwritten.
Rows a dead send left in flight arrive as `unknown`, which is what the next send would make
of them. The recipients go in by COPY, never a statement per row.
"""

from __future__ import annotations

import psycopg

from newsletter.config import Config
from newsletter.sending.ledger import IN_FLIGHT, LEDGER_NAME, UNKNOWN, Ledger

_COLUMNS = (
    "issue, key, list, email, state, attempts, provider_id, run, batch, first_at, "
    "updated_at, sent_at, error"
)


def push_ledger(conn: psycopg.Connection, config: Config) -> str:
    """Copy the workspace's send ledger (runs and recipients) into the store; what it did."""
    path = config.state_dir / LEDGER_NAME
    if not path.exists():
        return "ledger: no sends recorded, nothing to copy"
    with Ledger(path) as book, book.connect() as db:  # opening applies a dead send's journals
        runs = db.execute(
            "SELECT id, issue, list, provider, started_at, finished_at, outcome FROM runs"
        ).fetchall()
        rows = db.execute(f"SELECT {_COLUMNS} FROM recipients")
        with conn.transaction():
            new_runs = _push_runs(conn, runs)
            conn.execute(
                "CREATE TEMP TABLE pushed (issue text, key text, list text, email text, "
                "state text, attempts integer, provider_id text, run bigint, batch integer, "
                "first_at timestamptz, updated_at timestamptz, sent_at timestamptz, "
                "error text) ON COMMIT DROP"
            )
            total = 0
            with conn.cursor().copy(f"COPY pushed ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    total += 1
            copied = conn.execute(
                f"INSERT INTO send_recipients ({_COLUMNS}) "
                "SELECT p.issue, p.key, p.list, p.email, "
                "CASE WHEN p.state = %s THEN %s ELSE p.state END, p.attempts, p.provider_id, "
                "r.id, p.batch, p.first_at, p.updated_at, p.sent_at, p.error FROM pushed p "
                "LEFT JOIN send_runs r ON r.origin = 'files:' || p.run || ':' || "
                "(SELECT started_at FROM pushed_runs WHERE id = p.run) "
                "ON CONFLICT (issue, key) DO NOTHING",
                (IN_FLIGHT, UNKNOWN),
            ).rowcount
    return (
        f"ledger: {new_runs} run(s) and {copied:,} recipient row(s) copied"
        f" ({total - copied:,} already there)"
    )


def _push_runs(conn: psycopg.Connection, runs: list[tuple]) -> int:
    """The file's runs into send_runs (those not there yet); how many were new."""
    conn.execute("CREATE TEMP TABLE pushed_runs (id bigint, started_at text) ON COMMIT DROP")
    before = conn.execute("SELECT count(*) FROM send_runs").fetchone()[0]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO pushed_runs VALUES (%s, %s)", [(run[0], run[4]) for run in runs]
        )
        cur.executemany(
            "INSERT INTO send_runs (issue, list, provider, started_at, finished_at, outcome, "
            "origin) VALUES (%s, %s, %s, %s, %s, %s, 'files:' || %s || ':' || %s) "
            "ON CONFLICT (origin) DO NOTHING",
            [(*run[1:], run[0], run[4]) for run in runs],
        )
    return conn.execute("SELECT count(*) FROM send_runs").fetchone()[0] - before
