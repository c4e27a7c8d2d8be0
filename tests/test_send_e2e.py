"""End to end: real providers against loopback servers, faults injected, processes killed.

Each test checks the promise of `newsletter send` against what the server actually got:
nobody receives the issue twice, nobody is lost (everyone was received, or is reported
unknown), and only the batches in flight when a send died can be unknown.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from loopback import SendgridServer, SgAction, SmtpServer
from test_send import write_list

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import ExitCode
from newsletter.providers import make_provider
from newsletter.sending.ledger import IN_FLIGHT, RETRY, SENT, UNKNOWN, Ledger

KEY = "SG.loopback-test-key.e2e"
ISSUE = "issues/merge.md"
# The client's timeout, generous on purpose: every lost answer these tests count comes from a
# server that hangs up, at once. A timeout that fires because a loaded machine starved the
# loopback server would turn a real answer into one more unknown (or a retry), and the exact
# counts the tests assert would fail for no fault of the code.
CLIENT_TIMEOUT = "60"


@pytest.fixture
def root(workspace: Path) -> Path:
    return workspace


def smtp_env(server: SmtpServer) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "smtp",
        "NEWSLETTER_SMTP_HOST": server.host,
        "NEWSLETTER_SMTP_PORT": str(server.port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SMTP_TIMEOUT": CLIENT_TIMEOUT,
    }


def sendgrid_env(server: SendgridServer) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_HOST": server.url,
        "NEWSLETTER_SENDGRID_TIMEOUT": CLIENT_TIMEOUT,
        "SENDGRID_API_KEY": KEY,
    }


def send_in_process(root: Path, env: dict[str, str], settings: sending.Settings) -> sending.Summary:
    config = load_config(root / "newsletter.toml", env=env)
    prepared = sending.prepare(config, root / ISSUE)
    with sending.open_ledger(config, prepared) as ledger:
        factory = lambda: make_provider(config.send.provider, config, env=env)  # noqa: E731
        return sending.run(prepared, ledger, factory, settings)


def ledger_states(root: Path) -> dict[str, str]:
    with Ledger(root / ".newsletter" / "ledger.sqlite3") as ledger:
        return {row.email: row.state for row in ledger.rows("merge")}


def assert_exactly_once(emails: list[str], received: list[str], states: dict[str, str]) -> set:
    """Nobody twice, nobody lost; the ledger agrees with the server. Returns the unknown ones."""
    counts = collections.Counter(received)
    twice = [e for e, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} recipients got the issue twice, e.g. {twice[:3]}"
    assert set(counts) <= set(emails)
    unknown = {e for e, s in states.items() if s == UNKNOWN}
    sent = {e for e, s in states.items() if s == SENT}
    lost = set(emails) - set(counts) - unknown
    assert not lost, (
        f"{len(lost)} recipients neither received nor reported, e.g. {sorted(lost)[:3]}"
    )
    assert sent <= set(counts), "the ledger says sent but the server never got it"
    assert set(counts) <= sent | unknown, "received but not recorded as sent or unknown"
    return unknown


def test_smtp_10000_recipients_each_received_once_despite_451s_and_drops(root):
    emails = write_list(root, 10_000)
    rng = random.Random(451)
    with SmtpServer() as server:
        script = server.script
        script.rcpt_replies_once = {
            e: "451 4.7.1 Greylisted, try again" for e in rng.sample(emails, 500)
        }
        script.data_replies_once = {e: "451 4.3.0 Queue full" for e in rng.sample(emails, 200)}
        dropped = set(rng.sample(emails, 20))
        script.drop_on_data = set(dropped)  # the message went out, the answer never came
        script.close_after = 700  # the server hangs up long-lived connections now and then
        settings = sending.Settings(workers=4, batch_size=50, backoff=0.02, backoff_max=0.1)
        summary = send_in_process(root, smtp_env(server), settings)
        received = [m.rcpt_tos[0] for m in server.messages]

    assert (summary.failed, summary.retry, summary.unknown) == (0, 0, len(dropped))
    assert summary.sent == 10_000 - len(dropped)
    assert summary.exit_code == ExitCode.INCOMPLETE  # the unknown ones are reported
    unknown = assert_exactly_once(emails, received, ledger_states(root))
    assert unknown == dropped and not unknown & set(received)
    assert len(set(m.peer for m in server.messages)) > 4  # several connections, reconnects


class SendgridFaults:
    """Per request: 20 % server errors, 429 storms with reset headers, and a few dropped answers."""

    def __init__(self, seed: int, accept_then_drop: set[int] = frozenset()) -> None:
        self.rng = random.Random(seed)
        self.accept_then_drop = accept_then_drop
        self.requests = 0
        self.storm = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.requests += 1
            if self.requests in self.accept_then_drop:
                return SgAction(accept_then_drop=True)  # delivered, but the answer is lost
            if self.storm:
                self.storm -= 1
                reset = str(int(time.time()) + 1)
                return SgAction(429, {"errors": [{"message": "too many requests"}]},
                                {"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": "0"})  # fmt: skip
            roll = self.rng.random()
            if roll < 0.2:
                return SgAction(self.rng.choice([500, 502, 503]))
            if roll < 0.3:
                self.storm = 3
                return SgAction(429, headers={"Retry-After": "0.2"})
            return None


class NoFaults:
    def next(self) -> None:
        return None


def sendgrid_server(faults=None) -> SendgridServer:
    return SendgridServer(api_key=KEY, faults=(faults or NoFaults()).next)


def test_sendgrid_10000_recipients_each_received_once_despite_5xx_429_and_drops(root):
    emails = write_list(root, 10_000)
    faults = SendgridFaults(seed=5, accept_then_drop={7})
    with sendgrid_server(faults) as server:
        server.script(drop=True)  # the very first request: read, then no answer, not delivered
        # The faults go by arrival, so which batch meets them depends on how the two workers
        # happen to take turns. The send ends at the 18th 202, after 49 requests holding 9
        # server errors: with the default budget of 6, a batch that drew 6 of them (its worker
        # backing off while the other took the 202s) was left to retry. A budget of 10 cannot
        # run out, whatever the turns.
        settings = sending.Settings(
            workers=2, batch_size=500, backoff=0.02, backoff_max=0.1, max_attempts=10
        )
        summary = send_in_process(root, sendgrid_env(server), settings)
        received = [d.to_email for d in server.deliveries()]
        answers = collections.Counter(status for status, _ in server.attempts)

    assert answers[429] >= 3 and answers[500] + answers[502] + answers[503] >= 3
    assert (summary.failed, summary.retry) == (0, 0), (summary.stopped, summary.failures)
    assert summary.unknown == 1000  # two batches of 500 whose answers were lost
    unknown = assert_exactly_once(emails, received, ledger_states(root))
    assert len(unknown & set(received)) == 500  # accepted, then the connection dropped
    assert summary.sent + summary.unknown == 10_000


# --- killed and resumed -------------------------------------------------------------------


def cli(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full.update(
        env, PYTHONPATH=str(REPO), NEWSLETTER_SECRET="e2e-secret-0123456789abcdef-0123456789"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", ISSUE, "--yes", *args],
        cwd=root,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"send ended early ({process.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.002)


def in_flight(root: Path) -> int:
    with Ledger(root / ".newsletter" / "ledger.sqlite3") as ledger:
        return ledger.counts("merge").get("main", {}).get(IN_FLIGHT, 0)


def kill_and_resume(root, env, received, kill_at, in_flight_limit) -> subprocess.CompletedProcess:
    """Start the send, SIGKILL it once the server has `kill_at[i]` messages, resume; finish."""
    for threshold in kill_at:
        process = cli(root, env)
        wait_until(lambda t=threshold: received() >= t, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert in_flight(root) <= in_flight_limit  # only what was being handed over
    process = cli(root, env)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_smtp_send_killed_at_several_points_resumes_without_loss_or_duplicates(root):
    emails = write_list(root, 3000)
    with SmtpServer() as server:
        server.script.data_delay = 0.001
        env = {
            **smtp_env(server),
            "NEWSLETTER_SEND_WORKERS": "4",
            "NEWSLETTER_SEND_BATCH_SIZE": "25",
        }
        kills = [300, 1100, 1900, 2600]
        # Each outcome is recorded as it comes: at most the one message a connection is
        # handing over is in flight, however big the batches are.
        done = kill_and_resume(root, env, lambda: len(server.messages), kills, 4)
        received = [m.rcpt_tos[0] for m in server.messages]
    assert done.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), done.stderr
    unknown = assert_exactly_once(emails, received, ledger_states(root))
    assert len(unknown) <= len(kills) * 4
    if unknown:
        assert "Unknown: " in done.stdout and "--resend-unknown" in done.stdout


def test_sendgrid_10000_send_killed_at_several_points_resumes_without_loss_or_duplicates(root):
    emails = write_list(root, 10_000)

    class Slow(NoFaults):
        def next(self):
            return SgAction(delay=0.03)  # a request takes a while: kills land mid-request

    with sendgrid_server(Slow()) as server:
        env = {**sendgrid_env(server), "NEWSLETTER_SEND_BATCH_SIZE": "200"}
        kills = [1000, 3800, 6200, 8600]
        done = kill_and_resume(root, env, lambda: len(server.requests) * 200, kills, 2 * 200)
        received = [d.to_email for d in server.deliveries()]
    assert done.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), done.stderr
    unknown = assert_exactly_once(emails, received, ledger_states(root))
    assert len(unknown) <= len(kills) * 2 * 200


def test_ctrl_c_stops_after_the_batch_in_flight_and_says_how_to_resume(root):
    emails = write_list(root, 1500)
    with SmtpServer() as server:
        server.script.data_delay = 0.002
        # The send waits at 300 until Ctrl-C is sent: on a loaded machine it could otherwise
        # finish all 1,500 before this process got round to sending the signal.
        server.script.hold_after = 300
        env = {**smtp_env(server), "NEWSLETTER_SEND_BATCH_SIZE": "20"}
        process = cli(root, env)
        wait_until(lambda: len(server.messages) >= 300, process)
        process.send_signal(signal.SIGINT)
        server.script.release.set()
        out, err = process.communicate(timeout=60)
        assert process.returncode == ExitCode.INTERRUPTED, err
        assert f"Run `newsletter send {ISSUE}` again to resume" in err
        states = ledger_states(root)
        assert IN_FLIGHT not in states.values() and UNKNOWN not in states.values()
        first = len(server.messages)
        assert first < 1500

        process = cli(root, env)
        out, err = process.communicate(timeout=120)
        assert process.returncode == ExitCode.OK, err
        received = [m.rcpt_tos[0] for m in server.messages]
    assert re.search(rf"^Skipped {first:,} already sent\.$", out, re.M)
    assert assert_exactly_once(emails, received, ledger_states(root)) == set()
    assert set(ledger_states(root).values()) == {SENT}


def test_smtp_server_down_stops_the_send_and_a_later_run_finishes_it(root):
    emails = write_list(root, 400)
    with SmtpServer() as server:
        env = smtp_env(server)
        port = server.port
    # The server is gone: every connection is refused.
    down = {**env, "NEWSLETTER_SMTP_PORT": str(port)}
    settings = sending.Settings(workers=2, batch_size=50, backoff=0.01, max_consecutive_failures=4)
    summary = send_in_process(root, down, settings)
    assert summary.exit_code == ExitCode.PROVIDER
    assert "stopped after 4 failed attempts in a row; last: cannot connect" in summary.stopped
    assert set(ledger_states(root).values()) <= {RETRY}
    with SmtpServer() as server:
        summary = send_in_process(
            root, smtp_env(server), sending.Settings(workers=2, batch_size=50)
        )
        received = [m.rcpt_tos[0] for m in server.messages]
    assert summary.exit_code == ExitCode.OK
    assert sorted(received) == emails


def test_sendgrid_bad_key_stops_at_once_with_the_providers_message(root):
    write_list(root, 3000)
    with sendgrid_server() as server:
        env = {**sendgrid_env(server), "SENDGRID_API_KEY": "SG.wrong"}
        process = cli(root, {**env, "NEWSLETTER_SEND_BATCH_SIZE": "100"})
        out, err = process.communicate(timeout=60)
        assert len(server.attempts) <= 2  # one request per worker, then stop
    assert process.returncode == ExitCode.PROVIDER
    assert "Stopped: SendGrid refused the API key (401): check SENDGRID_API_KEY" in err
    assert "SG.wrong" not in out + err
    assert set(ledger_states(root).values()) == {RETRY}


def test_at_schedules_the_send_through_sendgrid_send_at(root):
    from typer.testing import CliRunner

    from newsletter.cli import app

    write_list(root, 30)
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(second=0, microsecond=0)
    with sendgrid_server() as server:
        args = ["send", ISSUE, "--yes", "--at", when.isoformat(timespec="minutes")]
        result = CliRunner().invoke(app, args, env=sendgrid_env(server))
        assert result.exit_code == 0, result.output
        assert {body["send_at"] for body in server.requests} == {int(when.timestamp())}
    assert "Delivery:   scheduled for " in result.output
    assert set(ledger_states(root).values()) == {SENT}


def test_sandbox_send_is_validated_by_sendgrid_and_not_recorded(root):
    from typer.testing import CliRunner

    from newsletter.cli import app

    write_list(root, 30)
    with sendgrid_server() as server:
        result = CliRunner().invoke(
            app, ["send", ISSUE, "--yes", "--sandbox"], env=sendgrid_env(server)
        )
        assert result.exit_code == 0, result.output
        (body,) = server.requests
        assert body["mail_settings"]["sandbox_mode"] == {"enable": True}
    assert not (root / ".newsletter" / "ledger.sqlite3").exists()
