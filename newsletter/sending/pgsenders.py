"""The senders of a shared send: each one's lease and heartbeat, settling the dead, the rate.

A sender renews its lease (`[store] lease_seconds`) from a thread of its own every quarter
of it. A sender whose lease ran out is dead, whatever it is doing: any sender settles it
(`settle_dead`) — the rows it had claimed go back to the plan, the rows it had handed over
with no answer become `unknown`, as a crash leaves them on the files store. Its own
statements check the lease (pgledger.py), so a sender that was only stalled stops instead
of sending what was given to another. Times are the database's, never a machine's clock.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

import psycopg

from newsletter.sending.ledger import IN_FLIGHT, NOT_HANDED, UNKNOWN
from newsletter.sending.pgledger import CLAIMED, DIED, PLANNED, PgLedger
from newsletter.store import pg

# The rows of `senders` (a subquery of dead or finishing senders) given back or settled.
_SETTLE = (
    "UPDATE send_recipients SET "
    "state = CASE WHEN state = %(in_flight)s AND handed THEN %(unknown)s ELSE %(planned)s END, "
    "attempts = CASE WHEN state = %(in_flight)s AND NOT handed "
    "THEN greatest(attempts - 1, 0) ELSE attempts END, "
    "error = CASE WHEN state = %(in_flight)s AND handed THEN %(why)s "
    "WHEN state = %(in_flight)s THEN %(not_handed)s ELSE error END, updated_at = now() "
    "WHERE sender IN ({senders}) AND state IN (%(claimed)s, %(in_flight)s)"
)
_STATES = {"in_flight": IN_FLIGHT, "unknown": UNKNOWN, "planned": PLANNED, "claimed": CLAIMED}


def settle_dead(conn: psycopg.Connection, issue: str) -> int:
    """Settle the senders of an issue whose lease ran out; how many rows that freed or settled."""
    dead = (
        "UPDATE send_senders SET finished_at = now(), outcome = 'lost' WHERE issue = %(issue)s "
        "AND finished_at IS NULL AND lease_until < clock_timestamp() RETURNING id"
    )
    cur = conn.execute(
        f"WITH dead AS ({dead}) " + _SETTLE.format(senders="SELECT id FROM dead"),
        {**_STATES, "issue": issue, "why": DIED, "not_handed": NOT_HANDED},
    )
    return cur.rowcount


class Sender:
    """This process as a sender of a send: its row, and the thread that renews its lease."""

    def __init__(self, ledger: PgLedger, issue: str, list_name: str) -> None:
        self.ledger = ledger
        self.issue = issue
        self.list_name = list_name
        self.id: int | None = None
        self.lost = threading.Event()  # the lease ran out: the send must stop
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def enlist(self, conn: psycopg.Connection) -> int:
        """Insert this sender's row (in the caller's transaction: the plan's, at its end, so
        that a long plan does not eat the lease)."""
        row = conn.execute(
            "INSERT INTO send_senders (issue, list, host, pid, lease_until) "
            "VALUES (%s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s)) RETURNING id",
            (self.issue, self.list_name, socket.gethostname(), os.getpid(), self.ledger.lease),
        ).fetchone()
        self.id = self.ledger.sender = int(row[0])
        return self.id

    def start(self, stop: threading.Event | None = None) -> None:
        """Renew the lease from now on; `stop` (the send's) is set if it is ever lost."""
        self._stop = stop
        self._thread = threading.Thread(target=self._beat, daemon=True, name="send-lease")
        self._thread.start()

    def _beat(self) -> None:
        # A connection of its own: a pool busy with workers must never delay the lease.
        every = self.ledger.lease / 4
        try:
            conn = pg.connect(self.ledger.url, autocommit=True)
        except Exception:  # noqa: BLE001 - the statements' own lease checks stop the send
            return
        with conn:
            while True:  # at once, then every quarter of the lease
                try:
                    alive = conn.execute(
                        "UPDATE send_senders SET heartbeat = now(), "
                        "lease_until = clock_timestamp() + make_interval(secs => %s) "
                        "WHERE id = %s AND finished_at IS NULL RETURNING 1",
                        (self.ledger.lease, self.id),
                    ).fetchone()
                except psycopg.Error:
                    alive = True  # the next beat tries again; the lease checks stay safe
                if alive is None:  # settled as dead by another sender: stop at once
                    self.lost.set()
                    if self._stop is not None:
                        self._stop.set()
                    return
                if self._done.wait(every):
                    return

    def settle(self) -> int:
        """Settle the dead senders of this send (settle_dead); rows freed or settled."""
        with pg.errors(self.ledger.url, "the send ledger"), self.ledger.pool.connection() as c:
            return settle_dead(c, self.issue)

    def finish(self, outcome: str) -> None:
        """Stop renewing; what this sender still holds goes back to the plan (or unknown)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.id is None:
            return
        with pg.errors(self.ledger.url, "the send ledger"), self.ledger.pool.connection() as c:
            c.execute(
                _SETTLE.format(senders="%(me)s"),
                {**_STATES, "me": self.id, "why": DIED, "not_handed": NOT_HANDED},
            )
            c.execute(
                "UPDATE send_senders SET finished_at = now(), lease_until = now(), outcome = %s "
                "WHERE id = %s AND finished_at IS NULL",
                (outcome, self.id),
            )


class SharedRate:
    """delivery.RateLimiter's interface over the plan's `next_slot`: --rate for the whole send.

    Each hand-over books its slot in one statement on the database's clock, so however many
    senders share the send, together they stay under the rate; a provider's Retry-After
    pushes the next slot for all of them.
    """

    def __init__(self, ledger: PgLedger, issue: str, list_name: str, rate: float) -> None:
        self.ledger = ledger
        self.key = (issue, list_name)
        self.interval = 1.0 / rate

    def acquire(self, count: int, stop: threading.Event) -> bool:
        (wait,) = self.ledger.run(
            "WITH booked AS (UPDATE send_plans SET next_slot = greatest(next_slot, "
            "clock_timestamp()) + make_interval(secs => %s) WHERE issue = %s AND list = %s "
            "RETURNING next_slot) "
            "SELECT extract(epoch FROM next_slot - clock_timestamp()) FROM booked",
            (count * self.interval, *self.key),
        )[0]
        start_in = float(wait) - count * self.interval
        return not (start_in > 0 and stop.wait(start_in))

    def pause(self, seconds: float) -> None:
        self.ledger.run(
            "UPDATE send_plans SET next_slot = greatest(next_slot, clock_timestamp() "
            "+ make_interval(secs => %s)) WHERE issue = %s AND list = %s",
            (seconds, *self.key),
        )


@dataclass(frozen=True)
class SenderRow:
    """A sender as `newsletter status` shows it."""

    id: int
    list: str
    host: str
    pid: int
    started_at: str
    heartbeat: str
    state: str  # sending, or how it ended (ok, interrupted, lost, ...)
    sent: int  # recipients it got accepted
    holding: int  # rows it has claimed or in flight now


def senders(ledger: PgLedger, issue: str) -> list[SenderRow]:
    """Every sender that took part in the issue's sends, oldest first."""
    from newsletter.sending.pgledger import stamp

    rows = ledger.run(
        "SELECT s.id, s.list, s.host, s.pid, s.started_at, s.heartbeat, "
        "CASE WHEN s.finished_at IS NULL AND s.lease_until > clock_timestamp() THEN 'sending' "
        "WHEN s.finished_at IS NULL THEN 'lost' ELSE coalesce(s.outcome, 'done') END, "
        "count(r.key) FILTER (WHERE r.state = 'sent'), "
        "count(r.key) FILTER (WHERE r.state IN ('claimed', 'in_flight')) "
        "FROM send_senders s LEFT JOIN send_recipients r ON r.issue = s.issue AND r.sender = s.id "
        "WHERE s.issue = %s GROUP BY s.id ORDER BY s.id",
        (issue,),
    )
    return [
        SenderRow(i, lst, host, pid, stamp(start), stamp(beat), state, sent, holding)
        for i, lst, host, pid, start, beat, state, sent, holding in rows
    ]
