"""Several `newsletter send` processes on one send, on PostgreSQL; senders killed with SIGKILL.

The promise is the files store's, across machines: nobody receives the issue twice, nobody
is lost (received, or reported unknown), and a sender that dies leaves unknown only the
request it was handing over; the living senders finish the rest once its lease runs out.
"""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import threading
import time

import psycopg
import pytest
from loopback import SendgridServer, SgAction, SmtpServer
from pg_server import write_list
from test_send_e2e import assert_exactly_once, cli, smtp_env, wait_until
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.errors import ExitCode
from newsletter.sending.ledger import IN_FLIGHT, SENT, UNKNOWN

# Tests on pg_workspace find its lists in the store, as `newsletter store push` puts them.
pytestmark = pytest.mark.usefixtures("lists_pushed_when_on_postgres")

KEY = "SG.loopback-test-key.senders"
BATCH = 200  # recipients per batch, and so per SendGrid request


def ledger_states(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT email, state FROM send_recipients WHERE issue = 'merge'"))


def env_for(server: SendgridServer, url: str, lease: float) -> dict[str, str]:
    return {
        "NEWSLETTER_STORE_URL": url,
        "NEWSLETTER_STORE_LEASE_SECONDS": str(lease),
        "NEWSLETTER_SEND_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_HOST": server.url,
        "NEWSLETTER_SENDGRID_TIMEOUT": "60",
        "SENDGRID_API_KEY": KEY,
        "NEWSLETTER_SEND_BATCH_SIZE": str(BATCH),
        "NEWSLETTER_SEND_WORKERS": "1",  # one request in flight per sender
    }


class Slow:
    """Each request takes a while, so that a kill lands while one is being handed over; the
    request numbered `hold` takes a second and sets `reached` as it arrives."""

    def __init__(self, hold: int = 0) -> None:
        self.hold = hold
        self.count = 0
        self.lock = threading.Lock()
        self.reached = threading.Event()

    def __call__(self) -> SgAction:
        with self.lock:
            self.count += 1
            if self.count == self.hold:
                self.reached.set()
                return SgAction(delay=1.0)
        return SgAction(delay=0.02)


def slow_server(faults: Slow | None = None) -> SendgridServer:
    return SendgridServer(api_key=KEY, faults=faults or Slow())


def handing_over(url: str, pid: int) -> bool:
    """Whether the sender with this pid has a request out with no answer yet."""
    with psycopg.connect(url) as conn:
        return bool(
            conn.execute(
                "SELECT 1 FROM send_recipients r JOIN send_senders s ON s.id = r.sender "
                "WHERE s.pid = %s AND r.state = 'in_flight' AND r.handed LIMIT 1",
                (pid,),
            ).fetchone()
        )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_three_senders_one_killed_send_20000_exactly_once_and_the_others_finish(
    pg_workspace, pg_url
):
    emails = write_list(pg_workspace, 20_000)
    with slow_server() as server:
        env = env_for(server, pg_url, lease=2.0)
        first = cli(pg_workspace, env)
        # The first sender plans; the others join its plan once it is in.
        wait_until(lambda: len(server.requests) >= 1, first)
        others = [cli(pg_workspace, env) for _ in range(2)]
        wait_until(lambda: len(server.requests) >= 30, first)
        wait_until(lambda: handing_over(pg_url, first.pid), first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        done = [finish(p) for p in others]
        received = [d.to_email for d in server.deliveries()]
    # OK, or incomplete for a sender that started after the killed one's lease ran out: its
    # plan then counted that sender's unknown recipients.
    for result in done:
        assert result.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), result.stderr
    states = ledger_states(pg_url)
    unknown = assert_exactly_once(emails, received, states)
    assert len(unknown) <= BATCH  # the one request the killed sender was handing over
    assert collections.Counter(states.values()) == {SENT: 20_000 - len(unknown)} | (
        {UNKNOWN: len(unknown)} if unknown else {}
    )
    with psycopg.connect(pg_url) as conn:
        by_sender = dict(
            conn.execute(
                "SELECT s.id, count(r.key) FROM send_senders s LEFT JOIN send_recipients r "
                "ON r.sender = s.id AND r.state = 'sent' GROUP BY s.id ORDER BY s.id"
            )
        )
        outcomes = dict(conn.execute("SELECT id, outcome FROM send_senders ORDER BY id"))
        planners = conn.execute(
            "SELECT s.pid FROM send_plans p JOIN send_senders s ON s.id = p.planned_by"
        ).fetchall()
    assert planners == [(first.pid,)]  # planned once, by the first; the others joined
    assert len(by_sender) == 3 and all(by_sender.values())  # each of the three sent a share
    ended = list(outcomes.values())
    assert ended.count("lost") == 1 and set(ended) - {"lost"} <= {"ok", "incomplete"}


def test_a_killed_sender_resumed_leaves_only_its_request_in_flight_unknown(pg_workspace, pg_url):
    emails = write_list(pg_workspace, 3000)
    faults = Slow(hold=5)
    with slow_server(faults) as server:
        env = env_for(server, pg_url, lease=1.5)
        process = cli(pg_workspace, env)
        wait_until(faults.reached.is_set, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        held = collections.Counter(ledger_states(pg_url).values())
        assert held[IN_FLIGHT] == BATCH  # the request the dead sender was handing over
        time.sleep(1.6)  # its lease runs out
        status = CliRunner().invoke(app, ["status", "issues/merge.md"], env={"COLUMNS": "200"})
        # Not settled until a sender comes: what it had claimed is shown as claimed.
        assert re.search(r"#1 \S+ pid \d+ since \S+: lost, 800 sent, \d+ in hand", status.output)
        assert re.search(
            r"list main: 800 sent, 200 unknown, [\d,]+ waiting for a sender, \d+ claimed",
            status.output,
        )
        resumed = finish(cli(pg_workspace, env))  # joins at once, finishes after the lease
        received = [d.to_email for d in server.deliveries()]
        assert resumed.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), resumed.stderr
        states = ledger_states(pg_url)
        unknown = assert_exactly_once(emails, received, states)
        assert len(unknown) == BATCH
        assert set(states.values()) <= {SENT, UNKNOWN}
        # Unknown is never resent without being asked: a new send has nothing to do.
        again = finish(cli(pg_workspace, env))
        assert "Nothing to send." in again.stdout
        assert f"{BATCH} unknown" in again.stdout
        forced = finish(cli(pg_workspace, env, "--resend-unknown"))
        assert forced.returncode == ExitCode.OK, forced.stderr
        assert ledger_states(pg_url) == dict.fromkeys(emails, SENT)


def test_rate_caps_the_whole_send_across_two_senders(pg_workspace, pg_url):
    write_list(pg_workspace, 120)
    with SendgridServer(api_key=KEY) as server:
        env = {**env_for(server, pg_url, lease=5.0), "NEWSLETTER_SEND_BATCH_SIZE": "10"}
        senders = [cli(pg_workspace, env, "--rate", "30") for _ in range(2)]
        results = [finish(p) for p in senders]
        received = [d.to_email for d in server.deliveries()]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert len(received) == len(set(received)) == 120
    with psycopg.connect(pg_url) as conn:
        first_at, last_at, count = conn.execute(
            "SELECT min(sent_at), max(sent_at), count(DISTINCT sender) FROM send_recipients"
        ).fetchone()
    assert count == 2, [r.stdout for r in results]  # both took part
    # 120 messages at 30/s together: the last batch of 10 goes 110/30 = 3.7 s after the first.
    # Two senders at 30/s each would be done in about half that.
    assert (last_at - first_at).total_seconds() >= 3.4


def test_a_stalled_sender_past_its_lease_stops_and_never_sends_what_another_took(
    pg_workspace, pg_url
):
    emails = write_list(pg_workspace, 3000)
    with slow_server() as server:
        env = env_for(server, pg_url, lease=1.5)
        stalled = cli(pg_workspace, env)
        wait_until(lambda: len(server.requests) >= 3, stalled)
        wait_until(lambda: handing_over(pg_url, stalled.pid), stalled)
        stalled.send_signal(signal.SIGSTOP)  # as a machine that hangs, or a long GC pause
        try:
            other = finish(cli(pg_workspace, env))  # takes over once the lease runs out
        finally:
            stalled.send_signal(signal.SIGCONT)
        woken = finish(stalled)
        received = [d.to_email for d in server.deliveries()]
    assert other.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), other.stderr
    assert woken.returncode != ExitCode.OK
    assert "lease ran out" in woken.stdout + woken.stderr
    states = ledger_states(pg_url)
    unknown = assert_exactly_once(emails, received, states)
    assert len(unknown) <= BATCH


def test_smtp_sender_killed_leaves_at_most_one_message_per_connection_unknown(pg_workspace, pg_url):
    emails = write_list(pg_workspace, 600)
    with SmtpServer() as server:
        server.script.data_delay = 0.002
        env = {
            "NEWSLETTER_STORE_URL": pg_url,
            "NEWSLETTER_STORE_LEASE_SECONDS": "1.5",
            **smtp_env(server),
            "NEWSLETTER_SEND_WORKERS": "4",
            "NEWSLETTER_SEND_BATCH_SIZE": "25",
        }
        process = cli(pg_workspace, env)
        wait_until(lambda: len(server.messages) >= 150, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        resumed = finish(cli(pg_workspace, env))
        received = [m.rcpt_tos[0] for m in server.messages]
    assert resumed.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), resumed.stderr
    unknown = assert_exactly_once(emails, received, ledger_states(pg_url))
    assert len(unknown) <= 4  # each of the four connections was handing over one message
