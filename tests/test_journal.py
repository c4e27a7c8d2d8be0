"""The send workers' journals: what a killed send answered reaches the ledger, nothing else."""

from __future__ import annotations

import stat
from pathlib import Path

from filelock import FileLock
from loopback import SmtpServer
from test_send import write_list
from test_send_e2e import smtp_env

from newsletter import sending
from newsletter.message import OutgoingMessage
from newsletter.providers import Result, Status
from newsletter.sending.handover import JournalHandover
from newsletter.sending.journal import Journal
from newsletter.sending.ledger import FAILED, IN_FLIGHT, NOT_HANDED, RETRY, SENT, UNKNOWN, Ledger


def message(key: str) -> OutgoingMessage:
    return OutgoingMessage(None, key, "", key, f"<id-{key}>", None, "", {})  # type: ignore[arg-type]


def killed_mid_batch(state: Path) -> Journal:
    """A worker's batch of a..e: a accepted, b refused, c handed over when the process died."""
    with Ledger(state / "ledger.sqlite3") as ledger:
        run = ledger.start_run("issue", "main", "smtp")
        journal = Journal(state, "issue", run, 1)
        handover = JournalHandover(journal, batch=1)
        handover.opening([message(k) for k in "abcde"])
        ledger.mark_in_flight("issue", "main", run, 1, [(k, f"{k}@x.org") for k in "abcde"])
        handover.before([message("a")])
        handover.after([Result("a", Status.ACCEPTED, provider_id="<id-a>")])
        handover.before([message("b")])
        handover.after([Result("b", Status.REJECTED, "550 5.1.1 no such user")])
        handover.before([message("c")])
    return journal  # never cleared: the ledger has none of it


def states(ledger: Ledger) -> dict[str, tuple]:
    return {r.key: (r.state, r.attempts, r.error) for r in ledger.rows("issue")}


def test_opening_the_ledger_applies_what_a_killed_send_journaled(tmp_path):
    state = tmp_path / ".newsletter"
    journal = killed_mid_batch(state)
    journal.close()  # as a kill leaves it: the file stays
    assert journal.path.exists()
    with Ledger(state / "ledger.sqlite3") as ledger:
        assert states(ledger) == {
            "a": (SENT, 1, None),
            "b": (FAILED, 1, "550 5.1.1 no such user"),
            "c": (IN_FLIGHT, 1, None),  # the one being handed over: may have gone
            "d": (RETRY, 0, NOT_HANDED),  # never handed over: the next send sends them
            "e": (RETRY, 0, NOT_HANDED),
        }
        assert not journal.path.exists()
        with ledger.claim("issue"):
            assert ledger.counts("issue") == {"main": {SENT: 1, FAILED: 1, UNKNOWN: 1, RETRY: 2}}
            assert ledger.blocked("issue", list("abcde")) == {"a": SENT, "b": FAILED, "c": UNKNOWN}


def test_a_journal_of_a_send_still_running_is_left_alone(tmp_path):
    state = tmp_path / ".newsletter"
    journal = killed_mid_batch(state)
    running = FileLock(state / "send-issue.lock", thread_local=False)
    with running.acquire(timeout=0):  # another process is sending the issue
        with Ledger(state / "ledger.sqlite3") as ledger:
            assert {s for s, _, _ in states(ledger).values()} == {IN_FLIGHT}
        assert journal.path.exists()
    journal.close()


def test_a_journal_cut_off_mid_line_is_applied_up_to_that_line(tmp_path):
    state = tmp_path / ".newsletter"
    journal = killed_mid_batch(state)
    journal.close()
    written = journal.path.read_bytes().rstrip(b"\0")
    journal.path.write_bytes(written + b'["done", "c", "se')  # killed mid-line
    with Ledger(state / "ledger.sqlite3") as ledger:
        assert states(ledger)["a"][0] == SENT and states(ledger)["c"][0] == IN_FLIGHT


def test_journals_are_private_while_the_send_runs_and_gone_after_it(workspace):
    emails = write_list(workspace, 120)
    modes: set[int] = set()

    def look(progress) -> None:
        modes.update(
            stat.S_IMODE(p.stat().st_mode) for p in (workspace / ".newsletter").glob("*.journal")
        )

    with SmtpServer() as server:
        settings = sending.Settings(workers=2, batch_size=10)
        summary = _send(workspace, smtp_env(server), settings, look)
        assert len(server.messages) == len(emails)
    assert summary.sent == len(emails)
    assert modes == {0o600}
    assert not list((workspace / ".newsletter").glob("*.journal"))


def _send(root: Path, env: dict[str, str], settings: sending.Settings, on_progress):
    from newsletter.config import load_config
    from newsletter.providers import make_provider

    config = load_config(root / "newsletter.toml", env=env)
    prepared = sending.prepare(config, root / "issues" / "merge.md")
    with sending.open_ledger(config, prepared) as ledger:
        factory = lambda: make_provider(config.send.provider, config, env=env)  # noqa: E731
        return sending.run(prepared, ledger, factory, settings, on_progress=on_progress)


def test_a_message_retried_in_the_same_batch_and_killed_before_it_went_again_is_not_unknown(
    tmp_path,
):
    state = tmp_path / ".newsletter"
    with Ledger(state / "ledger.sqlite3") as ledger:
        run = ledger.start_run("issue", "main", "smtp")
        journal = Journal(state, "issue", run, 1)
        first = JournalHandover(journal, batch=1)
        first.opening([message("a")])
        ledger.mark_in_flight("issue", "main", run, 1, [("a", "a@x.org")])
        first.before([message("a")])
        first.after([Result("a", Status.TEMPORARY, "451 try later")])
        ledger.record("issue", [("a", RETRY, None, "451 try later")])  # set aside to wait
        JournalHandover(journal, batch=1).opening([message("a")])
        ledger.mark_in_flight("issue", "main", run, 1, [("a", "a@x.org")])
    journal.close()  # killed before `a` went again
    with Ledger(state / "ledger.sqlite3") as ledger:
        assert states(ledger) == {"a": (RETRY, 1, NOT_HANDED)}
