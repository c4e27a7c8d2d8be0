"""The rows a report is computed from, read from the PostgreSQL store: the shared send ledger
(`send_runs`, `send_recipients`), serve's `web_events` and the issue's links (`issue_links`).

The same `Rows` and `Send` values as read.FilesReader, times written as the files store
writes them, so `figures.compute` cannot tell the stores apart.
"""

from __future__ import annotations

from newsletter.config import Config
from newsletter.report.read import Recipient, Rows, Send, Stored
from newsletter.sending.pgledger import stamp
from newsletter.store import pg
from newsletter.tracking import pglinks

EVENT_COLUMNS = "source, event, email, list, issue, occurred_at, payload"


class PgReader:
    """Reads the store in one read-only transaction per call; never changes it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = pg.url_of(config)

    def _connect(self):
        from newsletter.store.open import open_checked

        conn = open_checked(self.config)
        conn.read_only = True  # one snapshot: the figures of one moment
        return conn

    def sends(self, limit: int = 10) -> list[Send]:
        """The most recent sends (one per issue, newest first)."""
        with self._connect() as conn, pg.errors(self.url, "cannot read the send ledger"):
            rows = conn.execute(
                "SELECT issue, array_agg(DISTINCT list ORDER BY list), min(started_at) "
                "FROM send_runs GROUP BY issue ORDER BY 3 DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [Send(issue, tuple(lists), stamp(start)) for issue, lists, start in rows]

    def rows(self, issue: str, list_name: str | None = None) -> Rows:
        with self._connect() as conn, pg.errors(self.url, "cannot read the report's rows"):
            return self._rows(conn, issue, list_name)

    def _rows(self, conn, issue: str, list_name: str | None) -> Rows:
        where = "issue = %(issue)s AND (%(list)s::text IS NULL OR list = %(list)s)"
        params = {"issue": issue, "list": list_name}
        recipients = [
            Recipient(list_, key, state, stamp(sent_at), error)
            for list_, key, state, sent_at, error in conn.execute(
                # A row a sender has claimed is as good as in flight (as PgLedger.blocked);
                # a planned one is not in anyone's hands yet and counts as nothing so far.
                "SELECT list, key, CASE state WHEN 'claimed' THEN 'in_flight' ELSE state END, "
                f"sent_at, error FROM send_recipients WHERE {where} AND state != 'planned' "
                "ORDER BY list, key",
                params,
            )
        ]
        stored = [
            _stored(row)
            for row in conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM web_events WHERE {where} ORDER BY occurred_at, id",
                params,
            )
        ]
        (first,) = conn.execute(
            f"SELECT min(sent_at) FROM send_recipients WHERE {where}", params
        ).fetchone()
        web, later = [], []
        if first is not None:
            web = [
                _stored(row)
                for row in conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM web_events WHERE source = 'web' "
                    "AND event = 'unsubscribe' AND occurred_at >= %s ORDER BY occurred_at, id",
                    (stamp(first)[:19],),
                )
            ]
            later = [
                (key, other, stamp(at))
                for key, other, at in conn.execute(
                    "SELECT key, issue, sent_at FROM send_recipients WHERE issue != %s "
                    "AND sent_at > %s",
                    (issue, first),
                )
            ]
        return Rows(issue, recipients, stored, web, later, pglinks.read(conn, issue))


def _stored(row: tuple) -> Stored:
    payload = row[6]
    return Stored(*row[:6], payload=payload if isinstance(payload, dict) else {})
