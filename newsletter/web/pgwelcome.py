"""The welcome email's ledger on PostgreSQL: the shared send ledger's tables (`send_runs`,
`send_recipients`), written by whichever `serve` instance confirms.

A welcome is one message to one address, so it needs none of a send's plan, senders or
leases: taking the address's row `in_flight` is one conditional upsert, which only one
instance can win, and it is refused while the row holds (sent, failed for good, or in flight
or unknown: as Ledger.blocked without --resend-unknown). The row is then settled with the
provider's answer. `newsletter status` and `report` read these rows like any send's.
"""

from __future__ import annotations

import psycopg

from newsletter.sending.ledger import IN_FLIGHT, SENT
from newsletter.subscribers import Subscriber
from newsletter.web.pgstore import Pg

# The states ledger.holds lets a send try again (without --resend-unknown).
TAKE = (
    "INSERT INTO send_recipients AS r (issue, key, list, email, name, state, attempts, handed, "
    "run, batch) VALUES (%(issue)s, %(key)s, %(list)s, %(email)s, %(name)s, %(in_flight)s, 1, "
    "true, %(run)s, 0) ON CONFLICT (issue, key) DO UPDATE SET state = %(in_flight)s, "
    "attempts = r.attempts + 1, handed = true, run = %(run)s, batch = 0, list = %(list)s, "
    "email = %(email)s, error = NULL, updated_at = now() "
    "WHERE r.state IN ('retry', 'invalid') OR (r.state = 'failed' AND r.attempts = 0) "
    "RETURNING 1"
)


class PgWelcomes:
    def __init__(self, db: Pg) -> None:
        self.db = db

    def take(self, issue: str, list_name: str, row: Subscriber, provider: str) -> int | None:
        """A run with the address's row in flight in it; None when it must not be sent."""

        def work(conn: psycopg.Connection) -> int | None:
            with conn.transaction() as tx:
                [(run,)] = conn.execute(
                    "INSERT INTO send_runs (issue, list, provider) VALUES (%s, %s, %s) "
                    "RETURNING id",
                    (issue, list_name, provider),
                ).fetchall()
                taken = conn.execute(
                    TAKE,
                    {
                        "issue": issue,
                        "key": row.key,
                        "list": list_name,
                        "email": row.email,
                        "name": row.name,
                        "in_flight": IN_FLIGHT,
                        "run": run,
                    },
                ).fetchone()
                if taken is None:  # it had it (or another instance is sending it now)
                    raise psycopg.Rollback(tx)
                return run
            return None  # rolled back: no run is left behind for a welcome not sent

        return self.db.run(work, "cannot record the welcome message")

    def settle(
        self,
        issue: str,
        key: str,
        run: int,
        state: str,
        provider_id: str | None,
        error: str | None,
        outcome: str,
    ) -> None:
        """The provider's answer for the row this run took, and the run's end."""

        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute(
                    "UPDATE send_recipients SET state = %s, provider_id = coalesce(%s, "
                    "provider_id), error = %s, updated_at = now(), sent_at = CASE WHEN %s "
                    "THEN now() ELSE sent_at END WHERE issue = %s AND key = %s AND run = %s",
                    (state, provider_id, error, state == SENT, issue, key, run),
                )
                conn.execute(
                    "UPDATE send_runs SET finished_at = now(), outcome = %s WHERE id = %s",
                    (outcome, run),
                )

        self.db.run(work, "cannot record the welcome message")
