"""The plan of a shared send: made once, under a lock, and joined by every later sender.

The first sender of an issue takes the issue's advisory lock, reads the list and writes a
`planned` row per recipient (COPY into a scratch table, then one INSERT ... ON CONFLICT):
who was sent, failed for good or is unknown stays as the ledger says. A sender that starts
while another one is alive on the send joins its plan without reading the list. With no
sender alive, a new send plans again: the rows of the plan that left the list (unsubscribed
since) are dropped, and those to retry come back; a finished issue plans nobody.
"""

from __future__ import annotations

import itertools

import psycopg

from newsletter.sending.ledger import FAILED, INVALID, RETRY, SENT, UNKNOWN
from newsletter.sending.options import Settings
from newsletter.sending.pgledger import OPEN, PLANNED, PgLedger, dumps
from newsletter.sending.pgsenders import Sender, settle_dead
from newsletter.sending.planning import Plan, count_left_out
from newsletter.sending.prepared import Prepared
from newsletter.sending.summary import LISTED
from newsletter.store import pg
from newsletter.subscribers.sending import SendableStats, Skipped

_ROWS = 5000  # recipients per COPY write


def make_or_join(
    ledger: PgLedger, sender: Sender, prepared: Prepared, settings: Settings
) -> tuple[Plan, SendableStats]:
    """Enlist `sender` in the issue's send, planning it unless a live sender has; the plan
    and what the list left out (counted only by the sender that read it)."""
    slug, list_name = prepared.slug, prepared.list_name
    out, dropped = Plan(), SendableStats()
    with pg.errors(ledger.url, "cannot plan the send"), ledger.pool.connection() as conn:
        # One transaction (the pool commits it): the lock holds until the plan is in.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"send:{slug}",))
        settle_dead(conn, slug)
        live = conn.execute(
            "SELECT count(*) FROM send_senders WHERE issue = %s AND list = %s "
            "AND finished_at IS NULL",
            (slug, list_name),
        ).fetchone()[0]
        made = not (live and _is_open(conn, slug, list_name))
        if made:
            _plan(conn, prepared, settings, out, dropped)
        sender.enlist(conn)
        if made:
            conn.execute(
                "UPDATE send_plans SET planned_by = %s WHERE issue = %s AND list = %s",
                (sender.id, slug, list_name),
            )
        states = dict(
            conn.execute(
                "SELECT state, count(*) FROM send_recipients WHERE issue = %s AND list = %s "
                "GROUP BY state",
                (slug, list_name),
            ).fetchall()
        )
    planned = states.get(PLANNED, 0)
    out.to_send = planned if settings.limit is None else min(planned, settings.limit)
    out.over_limit = planned - out.to_send
    out.already_sent = states.get(SENT, 0)
    out.unknown = states.get(UNKNOWN, 0)
    out.failed = states.get(FAILED, 0)
    out.invalid = states.get(INVALID, 0)
    if made:
        count_left_out(prepared, out, dropped)
    return out, dropped


def _is_open(conn: psycopg.Connection, slug: str, list_name: str) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM send_recipients WHERE issue = %s AND list = %s AND state = ANY(%s) "
            "LIMIT 1",
            (slug, list_name, list(OPEN)),
        ).fetchone()
    )


def _plan(conn, prepared: Prepared, settings: Settings, out: Plan, dropped) -> None:
    """Read the list into the plan (the caller holds the issue's lock)."""
    slug, list_name = prepared.slug, prepared.list_name
    conn.execute(
        "CREATE TEMP TABLE incoming (key text, email text, name text, fields jsonb, "
        "position bigint, error text) ON COMMIT DROP"
    )
    recipients = prepared.recipients(dropped)
    position = itertools.count()
    with conn.cursor().copy(
        "COPY incoming (key, email, name, fields, position, error) FROM STDIN"
    ) as copy:
        while chunk := list(itertools.islice(recipients, _ROWS)):
            for r in chunk:
                if type(r) is Skipped:
                    if len(out.skipped) < LISTED:
                        out.skipped.append((r.where, r.reason))
                    error = f"{r.where}: {r.reason}"
                    copy.write_row((r.key, r.email, "", None, next(position), error))
                else:
                    fields = dumps(r.merge_fields())
                    copy.write_row((r.key, r.email, r.name or "", fields, next(position), None))
    conn.execute("CREATE INDEX ON incoming (key)")
    conn.execute("ANALYZE incoming")
    who = {"issue": slug, "list": list_name}
    conn.execute(
        "DELETE FROM send_recipients r WHERE issue = %(issue)s AND list = %(list)s "
        "AND (state = %(invalid)s OR (state = %(planned)s AND NOT EXISTS "
        "(SELECT 1 FROM incoming i WHERE i.key = r.key AND i.error IS NULL)))",
        {**who, "invalid": INVALID, "planned": PLANNED},
    )
    # Sent, failed for good (the provider saw it) and unknown stay; the rest is planned.
    conn.execute(
        "INSERT INTO send_recipients (issue, key, list, email, name, fields, position, state) "
        "SELECT DISTINCT ON (key) %(issue)s, key, %(list)s, email, name, fields, position, "
        "%(planned)s FROM incoming WHERE error IS NULL ORDER BY key, position "
        "ON CONFLICT (issue, key) DO UPDATE SET state = EXCLUDED.state, list = EXCLUDED.list, "
        "email = EXCLUDED.email, name = EXCLUDED.name, fields = EXCLUDED.fields, "
        "position = EXCLUDED.position, error = NULL, sender = NULL, updated_at = now() "
        "WHERE send_recipients.state IN (%(planned)s, %(retry)s, %(invalid)s) "
        "OR (send_recipients.state = %(failed)s AND send_recipients.attempts = 0) "
        "OR (%(resend)s AND send_recipients.state = %(unknown)s)",
        {
            **who,
            "planned": PLANNED,
            "retry": RETRY,
            "invalid": INVALID,
            "failed": FAILED,
            "unknown": UNKNOWN,
            "resend": settings.resend_unknown,
        },
    )
    # Malformed rows, never over a recipient the provider may have had.
    conn.execute(
        "INSERT INTO send_recipients (issue, key, list, email, position, state, error) "
        "SELECT DISTINCT ON (key) %(issue)s, key, %(list)s, email, position, %(invalid)s, error "
        "FROM incoming WHERE error IS NOT NULL ORDER BY key, position "
        "ON CONFLICT (issue, key) DO UPDATE SET state = EXCLUDED.state, error = EXCLUDED.error, "
        "updated_at = now() WHERE send_recipients.attempts = 0 "
        "OR send_recipients.state IN (%(retry)s, %(invalid)s)",
        {**who, "invalid": INVALID, "retry": RETRY},
    )
    conn.execute(
        "INSERT INTO send_plans (issue, list, recipients) "
        "SELECT %(issue)s, %(list)s, count(*) FROM incoming "
        "ON CONFLICT (issue, list) DO UPDATE SET planned_at = now(), "
        "recipients = EXCLUDED.recipients",
        who,
    )
