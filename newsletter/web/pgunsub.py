"""One-click unsubscribes on PostgreSQL, committed together: those arriving while a commit runs
are written by the next one, in one statement (the opt-out kept, the row changed, the event
recorded) and one round trip, so 200 at once cost a few statements, not 200 queued on the pool.

Each unsubscribe is answered once the statement holding it has committed; if it fails, every
unsubscribe in it is answered 503 (nothing is acknowledged unrecorded).
"""

from __future__ import annotations

import psycopg

from newsletter.db import GroupCommit
from newsletter.subscribers.model import utc_now
from newsletter.web.pgstore import Pg, event_id

# DISTINCT ON: the same link twice in one batch is one opt-out (ON CONFLICT DO UPDATE may not
# touch a row twice in one statement); each request still gets its own event, as before.
UNSUBSCRIBE_MANY = """
WITH given AS (
    SELECT * FROM unnest(%(lists)s::text[], %(ids)s::text[], %(keys)s::text[], %(vias)s::text[],
                         %(events)s::text[]) AS g(list, address_id, key, via, event_id)
), kept AS (
    INSERT INTO web_unsubscribes (list, address_id, key, via)
    SELECT DISTINCT ON (list, address_id) list, address_id, key, via FROM given
    ORDER BY list, address_id
    ON CONFLICT (list, address_id) DO UPDATE SET
        key = coalesce(EXCLUDED.key, web_unsubscribes.key), via = EXCLUDED.via, at = now()
    RETURNING 1
), changed AS (
    UPDATE subscribers AS s SET status = 'unsubscribed', updated_at = %(stamp)s,
        source = 'web:' || g.via
    FROM (SELECT DISTINCT ON (list, key) list, key, via FROM given WHERE key IS NOT NULL
          ORDER BY list, key) AS g
    WHERE s.list = g.list AND s.key = g.key
      AND lower(btrim(s.status)) IN ('', 'subscribed', 'pending')
    RETURNING 1
)
INSERT INTO web_events (source, event_id, event, email, list, occurred_at, payload)
SELECT 'web', event_id, 'unsubscribe', key, list, %(stamp)s, jsonb_build_object('via', via)
FROM given
ON CONFLICT (source, event_id) DO NOTHING
"""


class PgUnsubscribes:
    """`submit` returns once the unsubscribe is committed (StoreError if it could not be)."""

    def __init__(self, db: Pg) -> None:
        self.db = db
        self._grouped = GroupCommit(self._write)

    def submit(self, list_name: str, ident: str, key: str | None, via: str) -> None:
        # The event id is chosen here, once: a retried statement records each event once.
        self._grouped.submit((list_name, ident, key, via, event_id()))

    def _write(self, batch: list[tuple]) -> None:
        lists, ids, keys, vias, events = (list(column) for column in zip(*batch, strict=True))
        params = {
            "lists": lists,
            "ids": ids,
            "keys": keys,
            "vias": vias,
            "events": events,
            "stamp": utc_now(),
        }

        def work(conn: psycopg.Connection) -> None:
            conn.execute(UNSUBSCRIBE_MANY, params)

        self.db.run(work, "cannot record the unsubscribe")
