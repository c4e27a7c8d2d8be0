"""One-click unsubscribes on PostgreSQL, committed together: those arriving while a commit runs
are written by the next one, in one statement (the link looked up, the opt-out kept, the row
changed, the event recorded) and one round trip, so 200 at once cost a few statements, not
400 queued on the pool.

Each unsubscribe is answered once the statement holding it has committed; if it fails, every
unsubscribe in it is answered 503 (nothing is acknowledged unrecorded).
"""

from __future__ import annotations

import psycopg

from newsletter.db import GroupCommit
from newsletter.subscribers.model import utc_now
from newsletter.web.pgstore import Pg, event_id

# A link's key comes from web_address_ids when not given; a link not indexed there is not
# written (the caller indexes its list and tries again). DISTINCT ON: the same link twice in
# one batch is one opt-out (ON CONFLICT DO UPDATE may not touch a row twice in a statement);
# each request still gets its own event. Data-modifying WITHs run whether read or not.
UNSUBSCRIBE_MANY = """
WITH given AS (
    SELECT * FROM unnest(%(lists)s::text[], %(ids)s::text[], %(keys)s::text[], %(vias)s::text[],
                         %(events)s::text[]) WITH ORDINALITY AS g(list, address_id, key, via,
                                                                 event_id, n)
), found AS (
    SELECT g.list, g.address_id, coalesce(g.key, a.key) AS key, g.via, g.event_id, g.n
    FROM given g LEFT JOIN web_address_ids a
        ON g.key IS NULL AND a.list = g.list AND a.address_id = g.address_id
    WHERE g.key IS NOT NULL OR a.key IS NOT NULL
), kept AS (
    INSERT INTO web_unsubscribes (list, address_id, key, via)
    SELECT DISTINCT ON (list, address_id) list, address_id, key, via FROM found
    ORDER BY list, address_id
    ON CONFLICT (list, address_id) DO UPDATE SET
        key = coalesce(EXCLUDED.key, web_unsubscribes.key), via = EXCLUDED.via, at = now()
), changed AS (
    UPDATE subscribers AS s SET status = 'unsubscribed', updated_at = %(stamp)s,
        source = 'web:' || f.via
    FROM (SELECT DISTINCT ON (list, key) list, key, via FROM found ORDER BY list, key) AS f
    WHERE s.list = f.list AND s.key = f.key
      AND lower(btrim(s.status)) IN ('', 'subscribed', 'pending')
), recorded AS (
    INSERT INTO web_events (source, event_id, event, email, list, occurred_at, payload)
    SELECT 'web', event_id, 'unsubscribe', key, list, %(stamp)s, jsonb_build_object('via', via)
    FROM found
    ON CONFLICT (source, event_id) DO NOTHING
)
SELECT n FROM found
"""


class PgUnsubscribes:
    """`submit` returns once the unsubscribe is committed (StoreError if it could not be)."""

    def __init__(self, db: Pg) -> None:
        self.db = db
        self._grouped = GroupCommit(self._write)

    def submit(self, list_name: str, ident: str, key: str | None, via: str) -> bool:
        """Keep it; key None: the link's row from web_address_ids. False when there is no
        such row there (nothing written)."""
        # The event id is chosen here, once: a retried statement records each event once.
        return self.submit_many([(list_name, ident, key)], via)[0]

    def submit_many(self, entries: list[tuple[str, str, str | None]], via: str) -> list[bool]:
        """submit() of several (list, address id, key) at once, in the same statement."""
        return self._grouped.submit_many([(*entry, via, event_id()) for entry in entries])

    def _write(self, batch: list[tuple]) -> list[bool]:
        lists, ids, keys, vias, events = (list(column) for column in zip(*batch, strict=True))
        params = {
            "lists": lists,
            "ids": ids,
            "keys": keys,
            "vias": vias,
            "events": events,
            "stamp": utc_now(),
        }

        def work(conn: psycopg.Connection) -> set[int]:
            return {n for (n,) in conn.execute(UNSUBSCRIBE_MANY, params)}

        found = self.db.run(work, "cannot record the unsubscribe")
        return [n in found for n in range(1, len(batch) + 1)]
