"""The list read in a forked process ahead of the sending threads, against reading it in-thread.

The child only reads and builds; the parent consults and writes the ledger. These tests hold
the two paths to the same outcome, and check that the child never outlives the send, and that
its troubles (a bad row, its own death) stop the send cleanly with nothing lost or doubled.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import signal
import threading

import pytest
from test_send import Script, ledger_counts, ledger_rows, send, write_list

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import SendError, SubscriberError
from newsletter.providers import Result, Status
from newsletter.sending.ledger import IN_FLIGHT, SENT
from newsletter.sending.readahead import can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="the read-ahead process needs fork")

CHILD = "newsletter-read-ahead"
FIELDS = ("sent", "failed", "failures", "left out", "accepted", "messages", "ledger")
SETTINGS = sending.Settings(workers=2, batch_size=50, backoff=0.01, backoff_max=0.05)


@pytest.fixture
def config(workspace):
    return load_config(workspace / "newsletter.toml")


def children() -> list[str]:
    return [p.name for p in multiprocessing.active_children()]


def mixed_list(root) -> list[dict]:
    """1,200 rows: subscribed, unsubscribed, repeated, suppressed, and one merge failure."""
    rows = [
        {"email": f"r{i:05d}@example.org", "name": f"Reader {i}", "status": "subscribed"}
        for i in range(1200)
    ]
    rows[10]["status"] = "unsubscribed"
    rows[20]["email"] = "R00019@Example.org"  # the same address as row 19
    rows[30]["vip"] = "yes"  # a VIP without a nickname: its merge field fails
    rows[40]["vip"], rows[40]["nickname"] = "yes", "Chief"
    with (root / "subscribers" / "main.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["email", "name", "status", "vip", "nickname"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "subscribers" / "suppressions.csv").write_text(
        "email,reason,at\nr00050@example.org,complaint,2024-01-01T00:00:00+00:00\n"
    )
    (root / "issues" / "vip.md").write_text(
        "---\ntitle: VIP\npreheader: For our readers\n---\n\n"
        'Hello {{ subscriber.nickname if subscriber.vip is defined else "reader" }}, '
        "{{ subscriber.first_name | default('friend') }}.\n"
    )
    return rows


def test_read_ahead_in_a_child_sends_exactly_what_reading_in_thread_sends(
    tmp_path, workspace, monkeypatch
):
    monkeypatch.setenv(
        "NEWSLETTER_SECRET", "the-same-secret-for-both-runs-0123456789"
    )  # same tokens
    outcomes = []
    for ahead in (True, False):
        root = tmp_path / f"ahead-{ahead}"
        shutil.copytree(workspace, root)
        mixed_list(root)
        config = load_config(root / "newsletter.toml")
        seen: set[str] = set()

        def answer(message, attempt, seen=seen):
            seen.update(children())
            return Result(message.key, Status.ACCEPTED, provider_id="x")

        script = Script(answer)
        settings = sending.Settings(**{**vars(SETTINGS), "read_ahead": ahead})
        summary = send(config, script, settings, issue="vip.md")
        assert (CHILD in seen) is ahead  # the child did the reading, or nobody forked
        assert not children()  # and it is gone once the send is over
        bodies = {
            key: (m.to_email, m.to_name, m.unsubscribe_url, m.personalized())
            for key, m in script.messages.items()
        }
        outcomes.append(
            (
                summary.sent,
                summary.failed,
                [(who, why.replace(str(root), "ROOT")) for who, why in summary.failures],
                summary.plan.left_out,
                dict(script.accepted),
                bodies,
                {email: row.state for email, row in ledger_rows(config, "vip").items()},
            )
        )
    forked, in_thread = outcomes
    for what, a, b in zip(FIELDS, forked, in_thread, strict=True):
        assert a == b, what
    sent, failed, failures, left_out, accepted, bodies, _ = forked
    assert (sent, failed) == (1200 - 4, 1)  # unsubscribed, repeated, suppressed; one failure
    assert left_out == {"unsubscribed": 1, "suppressed": 1, "repeated": 1}
    assert failures[0][0] == "r00030@example.org" and "no value" in failures[0][1]
    assert set(accepted.values()) == {1}
    assert "Hello Chief, Reader." in bodies["r00040@example.org"][3].text
    assert "Hello reader, Reader." in bodies["r00041@example.org"][3].text


def test_a_list_unreadable_past_a_row_met_while_sending_stops_the_send_naming_file_and_line(
    config, workspace
):
    # A bad row is skipped (test_send_invalid_rows.py); a quote never closed leaves nothing
    # after it that can be told apart, so the send stops there.
    emails = write_list(workspace, 1500)
    with (workspace / "subscribers" / "main.csv").open("a", encoding="utf-8") as handle:
        handle.write('"not-an-address,Broken,subscribed,,,\n')
        handle.writelines(f"late{i}@example.org,Late,subscribed,,,\n" for i in range(10))
    script = Script()
    with pytest.raises(SubscriberError) as caught:
        send(config, script, SETTINGS)  # no counting pass first: the send itself meets it
    assert str(caught.value).startswith(
        "subscribers/main.csv:1502: a quoted value starting on this line is never closed"
    )
    assert not children()
    # What went out before the error is recorded as sent, and nothing is left in flight.
    counts = ledger_counts(config)
    assert IN_FLIGHT not in counts
    assert counts.get(SENT, 0) == len(script.accepted) <= 1500
    # Fixed, the next send reaches everyone else, once.
    path = workspace / "subscribers" / "main.csv"
    path.write_text(path.read_text().replace('"not-an-address', "fixed@example.org"))
    script2 = Script()
    send(config, script2, SETTINGS)
    assert not set(script.accepted) & set(script2.accepted)
    everyone = {*emails, "fixed@example.org", *(f"late{i}@example.org" for i in range(10))}
    assert set(script.accepted) | set(script2.accepted) == everyone


def test_the_reading_process_dying_stops_the_send_and_a_rerun_finishes_it(config, workspace):
    emails = write_list(workspace, 5000)
    killed = []

    def answer(message, attempt):
        if not killed:
            child = next(p for p in multiprocessing.active_children() if p.name == CHILD)
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)
        return Result(message.key, Status.ACCEPTED)

    script = Script(answer)
    settings = sending.Settings(workers=1, batch_size=10)
    with pytest.raises(SendError, match=r"list stopped unexpectedly \(killed by signal 9\)"):
        send(config, script, settings)
    assert killed and not children()
    assert IN_FLIGHT not in ledger_counts(config)
    assert 0 < len(script.accepted) < 5000
    script2 = Script()
    send(config, script2, SETTINGS)
    assert not set(script.accepted) & set(script2.accepted)
    assert set(script.accepted) | set(script2.accepted) == set(emails)


def test_a_send_stopped_early_ends_the_reading_process(config, workspace):
    write_list(workspace, 5000)
    summary = send(config, Script(), sending.Settings(batch_size=10, limit=25))
    assert summary.sent == 25 and summary.plan.over_limit == 4975
    assert not children()

    stop_after = []

    def answer(message, attempt):
        stop_after.append(message.key)
        if len(stop_after) == 30:
            stop.set()
        return Result(message.key, Status.ACCEPTED)

    stop = threading.Event()
    summary = send(config, Script(answer), sending.Settings(batch_size=10), stop=stop)
    assert summary.interrupted and summary.sent == 30
    assert not children()
