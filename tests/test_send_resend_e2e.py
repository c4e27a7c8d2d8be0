"""Resend end to end: `newsletter send` killed mid-request and resumed with --resend-unknown.

Resend answers a repeated Idempotency-Key with its first answer and delivers nothing again,
so the batches a killed send left unknown go again, as they were, and nobody gets two.
"""

from __future__ import annotations

import signal
from pathlib import Path

from loopback_resend import ReAction, ResendServer
from test_send import write_list
from test_send_e2e import (
    assert_exactly_once,
    cli,
    in_flight,
    ledger_states,
    wait_until,
)

from newsletter.errors import ExitCode
from newsletter.sending.ledger import UNKNOWN

KEY = "re_loopback_e2e"


def add_newcomer_first(folder: Path, n: int) -> str:
    """A subscriber joins at the top of the list: every later batch boundary moves."""
    path = folder / "subscribers" / "main.csv"
    header, first, *rest = path.read_text(encoding="utf-8").splitlines(keepends=True)
    email = f"newcomer{n}@example.org"
    joined = first.split(",", 1)[1]
    path.write_text(header + f"{email},{joined}" + first + "".join(rest))
    return email


def resend_env(server: ResendServer) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "resend",
        "NEWSLETTER_RESEND_HOST": server.url,
        "NEWSLETTER_RESEND_TIMEOUT": "10",
        "NEWSLETTER_SEND_RATE": "100000",
        "RESEND_API_KEY": KEY,
    }


def test_resend_send_killed_mid_request_resumes_with_resend_unknown_and_mails_nobody_twice(
    workspace: Path,
):
    root = workspace
    emails = write_list(root, 2000)
    # Between runs the list grows at the top, so the unknown recipients would be batched
    # with others (a new key) unless they go again as they went.
    # Each request is delivered, then answered a little later: kills land between the two.
    server = ResendServer(api_key=KEY, faults=lambda: ReAction(answer_after=0.05))
    with server:
        env = resend_env(server)
        unknown_seen = 0
        for threshold in (300, 900, 1500):
            process = cli(root, env, "--resend-unknown")
            wait_until(lambda t=threshold: len(server.received()) >= t, process)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            assert in_flight(root) <= 2 * 100  # one request per worker
            unknown_seen += in_flight(root)
            emails.append(add_newcomer_first(root, threshold))
        process = cli(root, env, "--resend-unknown")
        out, err = process.communicate(timeout=300)
        received = server.received()
        keys = [r["headers"]["Idempotency-Key"] for r in server.requests]
    assert process.returncode == ExitCode.OK, (out, err)
    assert unknown_seen > 0  # the kills did leave batches in doubt
    states = ledger_states(root)
    assert_exactly_once(emails, received, states)
    assert len(keys) > len(set(keys))  # the batches in doubt went again under their first key
    assert sorted(received) == sorted(emails)  # everyone, once: nothing left unknown
    assert UNKNOWN not in states.values()
