"""The send ledger on PostgreSQL: the same promises as ledger.py, for several senders at once.

Every sender of a send works on one plan (pgplan.py): a `send_recipients` row per recipient,
`planned` until a sender claims a batch of them (`FOR UPDATE SKIP LOCKED`: two senders never
get the same row). The sender marks a batch `in_flight` before the provider sees it and
records each outcome as it comes, as the files store's ledger does. A sender that reports
handovers (SendGrid, SMTP, ...) writes each step here instead of a local journal (PgJournal):
a row is `handed` once the request carrying it went out, so when a sender dies only the
request under way becomes `unknown`; the rest of its batch goes back to the plan.

Only a sender whose lease (pgsenders.py) is alive may mark rows in flight or hand them over:
the statement that does it checks the lease, with a margin, so a sender that lost its lease
(stalled past it, and settled by another) never sends what the plan gave to someone else.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence

import psycopg
from psycopg_pool import ConnectionPool

from newsletter.errors import SendError
from newsletter.sending.ledger import (
    FAILED,
    IN_FLIGHT,
    NOT_HANDED,
    RETRY,
    SENT,
    UNKNOWN,
    Row,
    holds,
    segments_by_list,
)
from newsletter.store import pg

PLANNED = "planned"  # in the plan, waiting for a sender
CLAIMED = "claimed"  # in a sender's batch, not handed to the provider yet
OPEN = (PLANNED, CLAIMED, IN_FLIGHT)
DIED = "its sender stopped (lease ran out) before the provider answered"


class LeaseLost(SendError):
    """This sender's lease ran out (it stalled): what it held was given back; it must stop."""


def stamp(value: dt.datetime | None) -> str | None:
    """A timestamptz as the files ledger writes its times."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PgLedger:
    """The ledger of one sender process: a small pool shared by its worker threads."""

    path = None  # no state folder: workers journal here (PgJournal), not in files
    # Set by the send: its provider reports each hand-over (PgJournal), so a row in flight
    # is `handed` only once its request goes out; otherwise as soon as it is marked.
    journaled = False

    def __init__(self, url: str, *, size: int = 4, lease: float = 60.0) -> None:
        self.url = url
        self.lease = lease
        # Marks and handovers need this much lease left: a sender that stalls longer than
        # the margin between two heartbeats stops before it hands anything over.
        self.margin = lease / 2
        self.sender: int | None = None  # set once this process joins a send (pgsenders)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, size),
            kwargs={
                "application_name": pg.APPLICATION,
                "connect_timeout": 10,
                # A sender stopped in the middle of a claim must not keep its rows locked
                # from the others: the server ends such a transaction after a lease.
                "options": f"-c idle_in_transaction_session_timeout={int(lease * 1000)}",
            },
            open=False,
        )
        with pg.errors(url, "cannot connect to the PostgreSQL store"):
            self.pool.open(wait=True, timeout=15)

    def __enter__(self) -> PgLedger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def run(self, sql: str, params: Sequence | dict = ()) -> list[tuple]:
        """One statement in a transaction of its own; its rows (if it returns any)."""
        with pg.errors(self.url, "the send ledger"), self.pool.connection() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    # Runs -------------------------------------------------------------------------------

    def start_run(
        self, issue: str, list_name: str, provider: str, segment: str | None = None
    ) -> int:
        rows = self.run(
            "INSERT INTO send_runs (issue, list, provider, sender, segment) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (issue, list_name, provider, self.sender, segment),
        )
        return int(rows[0][0])

    def segments(self, issue: str) -> dict[str, list[str]]:
        """List -> the segments its runs of the issue used, first used first ("" = whole list)."""
        rows = self.run(
            "SELECT list, coalesce(segment, '') FROM send_runs WHERE issue = %s ORDER BY id",
            (issue,),
        )
        return segments_by_list(rows)

    def finish_run(self, run: int, outcome: str) -> None:
        self.run(
            "UPDATE send_runs SET finished_at = now(), outcome = %s WHERE id = %s", (outcome, run)
        )

    def is_sending(self, issue: str) -> bool:
        """Whether a sender with a live lease works on the issue now."""
        rows = self.run(
            "SELECT 1 FROM send_senders WHERE issue = %s AND finished_at IS NULL "
            "AND lease_until > clock_timestamp() LIMIT 1",
            (issue,),
        )
        return bool(rows)

    # Claiming ---------------------------------------------------------------------------

    def claim(self, issue: str, list_name: str, run: int, count: int) -> list[tuple]:
        """The next `count` planned rows, now this sender's: [(key, email, name, fields)]."""
        rows = self.run(
            # Materialized: a LIMIT subquery joined in an UPDATE may be scanned again, and
            # each scan would claim `n` more rows.
            "WITH c AS MATERIALIZED (SELECT key FROM send_recipients WHERE issue = %(issue)s "
            "AND list = %(list)s AND state = %(planned)s ORDER BY position LIMIT %(n)s "
            "FOR UPDATE SKIP LOCKED) "
            "UPDATE send_recipients r SET state = %(claimed)s, sender = %(me)s, run = %(run)s, "
            "lease_until = s.lease_until, updated_at = now() FROM c, send_senders s "
            "WHERE r.issue = %(issue)s AND r.key = c.key AND s.id = %(me)s "
            "AND s.finished_at IS NULL AND s.lease_until > clock_timestamp() "
            "RETURNING r.position, r.key, r.email, r.name, r.fields",
            {
                "claimed": CLAIMED,
                "planned": PLANNED,
                "me": self.sender,
                "run": run,
                "issue": issue,
                "list": list_name,
                "n": count,
            },
        )
        rows.sort()
        return [(key, email, name, fields or {}) for _, key, email, name, fields in rows]

    def others_busy(self, issue: str, list_name: str) -> bool:
        """Whether rows of the send are still open outside this sender: planned (claimable,
        or being claimed right now) or held by another sender, who may yet die."""
        rows = self.run(
            "SELECT 1 FROM send_recipients WHERE issue = %s AND list = %s AND (state = %s "
            "OR (state = ANY(%s) AND sender IS DISTINCT FROM %s)) LIMIT 1",
            (issue, list_name, PLANNED, [CLAIMED, IN_FLIGHT], self.sender),
        )
        return bool(rows)

    # Recipients -------------------------------------------------------------------------

    def blocked(
        self, issue: str, keys: Sequence[str], resend_unknown: bool = False
    ) -> dict[str, str]:
        """As Ledger.blocked (a dry run plans against it): keys not to send now, with state."""
        rows = self.run(
            "SELECT key, state, attempts FROM send_recipients WHERE issue = %s AND key = ANY(%s)",
            (issue, list(keys)),
        )
        # A row claimed by a sender is as good as in flight.
        unsettled = {CLAIMED: IN_FLIGHT}
        return {
            key: state
            for key, state, n in rows
            if holds(unsettled.get(state, state), n, resend_unknown)
        }

    def mark_in_flight(
        self,
        issue: str,
        list_name: str,
        run: int,
        batch: int,
        recipients: Sequence[tuple[str, str]],
    ) -> None:
        """This sender's claimed rows in flight, before the provider sees them; LeaseLost if
        any is no longer its own or its lease is short (then nothing is marked)."""
        keys = [key for key, _ in recipients]
        with pg.errors(self.url, "the send ledger"), self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE send_recipients SET state = %s, attempts = attempts + 1, run = %s, "
                "batch = %s, handed = %s, updated_at = now(), error = NULL "
                "WHERE issue = %s AND key = ANY(%s) AND sender = %s AND state = ANY(%s) "
                "AND EXISTS (SELECT 1 FROM send_senders WHERE id = %s "
                "AND finished_at IS NULL AND lease_until > clock_timestamp() + make_interval(secs => %s))",
                (IN_FLIGHT, run, batch, not self.journaled, issue, keys, self.sender)
                + ([CLAIMED, RETRY], self.sender, self.margin),
            )
            if cur.rowcount != len(keys):
                conn.rollback()
                raise LeaseLost(
                    "this sender's lease ran out (it stalled): its rows went back to the "
                    "plan for the other senders; run the send again to help"
                )

    def handed_over(self, issue: str, keys: Sequence[str], outcomes: Sequence[tuple]) -> None:
        """A step is going out (its keys handed), with the answers of the step before it."""
        with pg.errors(self.url, "the send ledger"), self.pool.connection() as conn:
            self._record(conn, issue, outcomes)
            cur = conn.execute(
                "UPDATE send_recipients SET handed = true WHERE issue = %s AND key = ANY(%s) "
                "AND sender = %s AND state = %s AND EXISTS (SELECT 1 FROM send_senders "
                "WHERE id = %s AND finished_at IS NULL "
                "AND lease_until > clock_timestamp() + make_interval(secs => %s))",
                (issue, list(keys), self.sender, IN_FLIGHT, self.sender, self.margin),
            )
            if cur.rowcount != len(keys):
                conn.rollback()
                raise LeaseLost("this sender's lease ran out (it stalled) before a hand-over")

    def release(self, issue: str, keys: Sequence[str], reason: str = NOT_HANDED) -> None:
        """In-flight rows never handed over: out of flight (retry), their attempt not counted."""
        self.run(
            "UPDATE send_recipients SET state = %s, attempts = greatest(attempts - 1, 0), "
            "error = %s, updated_at = now() WHERE issue = %s AND key = ANY(%s) "
            "AND sender = %s AND state = %s",
            (RETRY, reason, issue, list(keys), self.sender, IN_FLIGHT),
        )

    def record(self, issue: str, outcomes: Iterable[tuple]) -> None:
        """Store what the provider said about this sender's in-flight rows."""
        with pg.errors(self.url, "the send ledger"), self.pool.connection() as conn:
            self._record(conn, issue, outcomes)

    def _record(self, conn: psycopg.Connection, issue: str, outcomes: Iterable[tuple]) -> None:
        groups: dict[tuple, list[str]] = {}
        for key, state, provider_id, error in outcomes:
            groups.setdefault((state, provider_id, error), []).append(key)
        for (state, provider_id, error), keys in groups.items():
            # A row this sender holds, or one settled as unknown while it stalled: the answer
            # that came after all is the truth. A row given to another sender is not touched.
            conn.execute(
                "UPDATE send_recipients SET state = %s, provider_id = coalesce(%s, provider_id),"
                " error = %s, updated_at = now(), sent_at = CASE WHEN %s THEN now() "
                "ELSE sent_at END WHERE issue = %s AND key = ANY(%s) AND sender = %s "
                "AND state = ANY(%s)",
                (state, provider_id, error, state == SENT, issue, keys, self.sender)
                + ([IN_FLIGHT, CLAIMED, RETRY, UNKNOWN],),
            )

    def record_unsent(
        self, issue: str, list_name: str, run: int, failures: Iterable[tuple[str, str, str]]
    ) -> None:
        """(key, email, reason) of claimed rows whose message could not be built: failed."""
        self.record(issue, [(key, FAILED, None, reason) for key, _, reason in failures])

    def forget(self, key: str, replacement: str) -> int:
        """GDPR erasure: the address's rows keep their state but only `replacement` (a hash);
        its name and merge fields go."""
        rows = self.run(
            "UPDATE send_recipients SET key = %s, email = %s, name = '', fields = NULL "
            "WHERE key = %s RETURNING 1",
            (replacement, replacement, key),
        )
        return len(rows)

    def first_sent(self) -> dict[str, str]:
        """{issue: when its first message was accepted} for every issue sent to anyone."""
        with pg.errors(self.url, "the send ledger"), self.pool.connection() as conn:
            return first_sent(conn)

    def unknown_batches(self, issue: str) -> dict[str, tuple[int, int]]:
        rows = self.run(
            "SELECT key, run, batch FROM send_recipients WHERE issue = %s AND state = %s "
            "AND run IS NOT NULL AND batch IS NOT NULL",
            (issue, UNKNOWN),
        )
        return {key: (run, batch) for key, run, batch in rows}

    def counts(self, issue: str) -> dict[str, dict[str, int]]:
        """{list: {state: count}} for an issue, lists in the order they were first sent to."""
        rows = self.run(
            "SELECT list, state, count(*), min(first_at) FROM send_recipients WHERE issue = %s "
            "GROUP BY list, state ORDER BY 4",
            (issue,),
        )
        out: dict[str, dict[str, int]] = {}
        for list_name, state, count, _ in rows:
            out.setdefault(list_name, {})[state] = count
        return out

    def rows(
        self, issue: str, states: Sequence[str] | None = None, list_name: str | None = None
    ) -> Iterator[Row]:
        """Recipients of an issue (optionally of some states or one list), by key, streamed."""
        last = ""
        while True:
            page = self.run(
                "SELECT issue, key, list, email, state, attempts, provider_id, run, batch, "
                "first_at, updated_at, sent_at, error FROM send_recipients WHERE issue = %s "
                "AND (%s::text[] IS NULL OR state = ANY(%s)) AND (%s::text IS NULL OR list = %s) "
                "AND key > %s ORDER BY key LIMIT 1000",
                (issue, states and list(states), states and list(states))
                + (list_name, list_name, last),
            )
            if not page:
                return
            for r in page:
                yield Row(*r[:9], stamp(r[9]), stamp(r[10]), stamp(r[11]), r[12])
            last = page[-1][1]


def first_sent(conn: psycopg.Connection) -> dict[str, str]:
    """PgLedger.first_sent on a connection of the caller's (serve's pool, the archive's)."""
    rows = conn.execute(
        "SELECT issue, min(sent_at) FROM send_recipients WHERE state = %s GROUP BY issue",
        (SENT,),
    ).fetchall()
    return {issue: stamp(at) for issue, at in rows if at}


class PgJournal:
    """A worker's journal (journal.py's interface) written into the ledger as it goes.

    JournalHandover appends ["open", ...] (nothing to do: the rows are in flight, not
    handed), [GO, batch, keys...] before a step goes out (written at once, with the
    answers the step before it had) and ["done", key, state, provider_id, error] answers.
    """

    def __init__(self, ledger: PgLedger, issue: str) -> None:
        self.ledger = ledger
        self.issue = issue
        self.answers: list[tuple] = []

    def append(self, lines: list[list]) -> None:
        for line in lines:
            if line[0] == "done":
                self.answers.append(tuple(line[1:]))
            elif line[0] == "go":
                self.ledger.handed_over(self.issue, line[2:], self.answers)
                self.answers = []

    def clear(self) -> None:
        self.answers = []  # the batch's outcomes are recorded by the delivery

    def close(self) -> None:
        pass


def dumps(fields: dict) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
