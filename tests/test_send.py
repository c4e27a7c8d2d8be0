"""The send engine in-process: ledger rules, retries, rate, stops, merge failures, scheduling.

A scripted provider answers each hand-over the way a provider would (accepted, rejected,
temporary, unknown); the end-to-end tests in test_send_e2e.py use real loopback servers.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import ExitCode, ProviderError, SendError
from newsletter.message import OutgoingMessage
from newsletter.providers import Provider, Result, Status
from newsletter.sending.ledger import FAILED, IN_FLIGHT, RETRY, SENT, UNKNOWN, Ledger

COLUMNS = ["email", "name", "status", "company"]


def write_list(root: Path, count: int, *, start: int = 0, extra: Sequence[dict] = ()) -> list[str]:
    """subscribers/main.csv with `count` subscribed rows (r00000@example.org, …); their addresses."""
    path = root / "subscribers" / "main.csv"
    emails = [f"r{i:05d}@example.org" for i in range(start, start + count)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [*COLUMNS, "vip", "nickname"])
        writer.writeheader()
        for i, email in enumerate(emails):
            writer.writerow({"email": email, "name": f"Reader {i}", "status": "subscribed"})
        for row in extra:
            writer.writerow(row)
    return emails


class Script:
    """What the provider answers; counts every acceptance per recipient, across instances."""

    def __init__(self, answer: Callable[[OutgoingMessage, int], Result] | None = None) -> None:
        self.answer = answer or (lambda m, attempt: Result(m.key, Status.ACCEPTED, provider_id="x"))
        self.accepted: collections.Counter[str] = collections.Counter()
        self.attempts: collections.Counter[str] = collections.Counter()
        self.batches: list[tuple[float, int]] = []  # (time, size) of each hand-over
        self.messages: dict[str, OutgoingMessage] = {}
        self.instances = 0
        self.lock = threading.Lock()

    def provider(self) -> Provider:
        with self.lock:
            self.instances += 1
        return ScriptedProvider(self)


class ScriptedProvider(Provider):
    name = "scripted"
    max_batch = 10

    def __init__(self, script: Script) -> None:
        self.script = script

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        script = self.script
        results = []
        with script.lock:
            script.batches.append((time.monotonic(), len(messages)))
        for message in messages:
            with script.lock:
                script.attempts[message.key] += 1
                attempt = script.attempts[message.key]
            result = script.answer(message, attempt)
            if result.status is Status.ACCEPTED:
                with script.lock:
                    script.accepted[message.key] += 1
                    script.messages[message.key] = message
            results.append(result)
        return results


FAST = sending.Settings(workers=3, batch_size=10, backoff=0.01, backoff_max=0.05)


@pytest.fixture
def config(workspace):
    return load_config(workspace / "newsletter.toml")


def send(config, script: Script, settings: sending.Settings = FAST, issue="merge.md", **kw):
    prepared = sending.prepare(config, config.issues_dir / issue, provider="outbox")
    with sending.open_ledger(config, prepared, dry_run=settings.dry_run) as ledger:
        return sending.run(prepared, ledger, script.provider, settings, **kw)


def ledger_counts(config, issue="merge") -> dict:
    with Ledger(config.state_dir / "ledger.sqlite3") as ledger:
        return ledger.counts(issue).get("main", {})


def ledger_rows(config, issue="merge") -> dict:
    with Ledger(config.state_dir / "ledger.sqlite3") as ledger:
        return {row.email: row for row in ledger.rows(issue)}


def test_send_delivers_to_each_recipient_once_and_records_it(config, workspace):
    emails = write_list(workspace, 57)
    script = Script()
    summary = send(config, script)
    assert summary.exit_code == ExitCode.OK
    assert (summary.sent, summary.failed, summary.unknown, summary.retry) == (57, 0, 0, 0)
    assert set(script.accepted) == set(emails)
    assert set(script.accepted.values()) == {1}
    assert script.instances == FAST.workers  # one provider per worker thread
    assert ledger_counts(config) == {SENT: 57}
    assert {size for _, size in script.batches} == {10, 7}


def test_send_skips_recipients_already_in_ledger(config, workspace):
    write_list(workspace, 25)
    send(config, Script())
    again = Script()
    summary = send(config, again)
    assert summary.plan.already_sent == 25
    assert summary.sent == 0 and summary.exit_code == ExitCode.OK
    assert not again.batches


def test_subscribers_added_between_runs_are_the_only_ones_sent_next(config, workspace):
    write_list(workspace, 30)
    send(config, Script())
    added = write_list(workspace, 40)[30:]
    script = Script()
    summary = send(config, script)
    assert sorted(script.accepted) == added
    assert summary.plan.already_sent == 30
    assert ledger_counts(config) == {SENT: 40}


def test_unsubscribed_and_suppressed_addresses_are_left_out(config, workspace):
    emails = write_list(
        workspace,
        10,
        extra=[
            {"email": "gone@example.org", "status": "unsubscribed"},
            {"email": "R00001@example.org", "status": "subscribed"},  # a repeat
        ],
    )
    (workspace / "subscribers" / "suppressions.csv").write_text(
        "email,reason,at\nr00002@example.org,complaint,2024-01-01T00:00:00+00:00\n"
    )
    script = Script()
    summary = send(config, script)
    assert sorted(script.accepted) == sorted(set(emails) - {"r00002@example.org"})
    prepared = sending.prepare(config, config.issues_dir / "merge.md")
    with Ledger(None) as scratch:
        plan = sending.plan(prepared, scratch, FAST)
    assert plan.left_out == {"unsubscribed": 1, "suppressed": 1, "repeated": 1}
    assert summary.exit_code == ExitCode.OK


def test_temporary_failures_are_retried_until_accepted(config, workspace):
    emails = write_list(workspace, 40)
    flaky = set(emails[::3])

    def answer(message, attempt):
        if message.key in flaky and attempt < 3:
            return Result(message.key, Status.TEMPORARY, "451 4.3.0 try again later")
        return Result(message.key, Status.ACCEPTED)

    script = Script(answer)
    summary = send(config, script)
    assert summary.exit_code == ExitCode.OK
    assert set(script.accepted.values()) == {1} and len(script.accepted) == 40
    rows = ledger_rows(config)
    assert {rows[e].attempts for e in flaky} == {3}
    assert {rows[e].state for e in emails} == {SENT}


def test_throttling_alone_never_fails_a_send(config, workspace):
    write_list(workspace, 30)

    def answer(message, attempt):
        if attempt <= 8:  # more throttled attempts than max_attempts or the failure limit
            return Result(message.key, Status.TEMPORARY, "429 Too Many Requests", retry_after=0.01)
        return Result(message.key, Status.ACCEPTED)

    settings = sending.Settings(
        workers=2, batch_size=10, backoff=0.01, max_attempts=2, max_consecutive_failures=2
    )
    script = Script(answer)
    summary = send(config, script, settings)
    assert summary.exit_code == ExitCode.OK
    assert summary.sent == 30 and set(script.accepted.values()) == {1}


def test_retry_after_from_the_provider_is_honoured(config, workspace):
    write_list(workspace, 1)
    times = []

    def answer(message, attempt):
        times.append(time.monotonic())
        if attempt == 1:
            return Result(message.key, Status.TEMPORARY, "429", retry_after=0.4)
        return Result(message.key, Status.ACCEPTED)

    send(config, Script(answer))
    assert times[1] - times[0] >= 0.4


def test_temporary_failures_that_persist_are_left_for_the_next_run(config, workspace):
    emails = write_list(workspace, 12)
    stuck = emails[0]

    def answer(message, attempt):
        if message.key == stuck:
            return Result(message.key, Status.TEMPORARY, "451 greylisted")
        return Result(message.key, Status.ACCEPTED)

    settings = sending.Settings(workers=1, batch_size=10, backoff=0.01, max_attempts=3)
    summary = send(config, Script(answer), settings)
    assert (summary.sent, summary.retry) == (11, 1)
    assert summary.exit_code == ExitCode.INCOMPLETE
    assert ledger_rows(config)[stuck].state == RETRY
    assert ledger_rows(config)[stuck].attempts == 3
    script = Script()
    summary = send(config, script)
    assert list(script.accepted) == [stuck] and summary.exit_code == ExitCode.OK


def test_permanent_failures_are_recorded_and_hard_bounces_suppressed(config, workspace):
    emails = write_list(workspace, 10)
    rejected, bounced = emails[3], emails[4]

    def answer(message, attempt):
        if message.key == rejected:
            return Result(message.key, Status.REJECTED, "554 5.7.1 message refused")
        if message.key == bounced:
            return Result(message.key, Status.REJECTED, "550 5.1.1 no such user", hard_bounce=True)
        return Result(message.key, Status.ACCEPTED)

    summary = send(config, Script(answer))
    assert summary.exit_code == ExitCode.INCOMPLETE
    assert summary.failed == 2
    assert set(summary.failures) == {
        (rejected, "554 5.7.1 message refused"),
        (bounced, "550 5.1.1 no such user"),
    }
    rows = ledger_rows(config)
    assert (rows[rejected].state, rows[rejected].error) == (FAILED, "554 5.7.1 message refused")
    suppressions = (workspace / "subscribers" / "suppressions.csv").read_text()
    assert bounced in suppressions and "hard bounce: 550 5.1.1 no such user" in suppressions
    assert rejected not in suppressions

    again = Script()
    summary = send(config, again)
    assert not again.batches  # rejected stays failed; bounced is now suppressed
    assert summary.plan.failed == 1
    assert summary.plan.left_out == {"suppressed": 1}
    assert summary.exit_code == ExitCode.INCOMPLETE


def test_unknown_outcomes_are_never_resent_unless_asked(config, workspace):
    emails = write_list(workspace, 10)
    lost = set(emails[5:7])

    def answer(message, attempt):
        if message.key in lost and attempt == 1:
            return Result(message.key, Status.UNKNOWN, "connection lost after the message was sent")
        return Result(message.key, Status.ACCEPTED)

    script = Script(answer)
    summary = send(config, script)
    assert summary.unknown == 2 and summary.exit_code == ExitCode.INCOMPLETE
    assert set(summary.unknowns) == lost

    summary = send(config, script)
    assert summary.plan.unknown == 2 and summary.sent == 0
    assert summary.exit_code == ExitCode.INCOMPLETE

    summary = send(config, script, sending.Settings(batch_size=10, resend_unknown=True))
    assert summary.sent == 2 and summary.exit_code == ExitCode.OK
    assert all(script.accepted[e] == 1 for e in lost)


def test_recipients_left_in_flight_by_a_dead_send_become_unknown(config, workspace):
    emails = write_list(workspace, 5)
    with Ledger(config.state_dir / "ledger.sqlite3") as ledger:
        run = ledger.start_run("merge", "main", "outbox")
        ledger.mark_in_flight("merge", "main", run, 1, [(e, e) for e in emails[:2]])
    script = Script()
    summary = send(config, script)
    assert sorted(script.accepted) == emails[2:]
    assert summary.plan.unknown == 2
    rows = ledger_rows(config)
    assert {rows[e].state for e in emails[:2]} == {UNKNOWN}


def test_consecutive_failures_stop_the_send_without_failing_the_list(config, workspace):
    emails = write_list(workspace, 200)

    def down(message, attempt):
        return Result(message.key, Status.TEMPORARY, "connection refused")

    settings = sending.Settings(
        workers=2, batch_size=10, backoff=0.01, backoff_max=0.02, max_consecutive_failures=5
    )
    script = Script(down)
    summary = send(config, script, settings)
    assert summary.exit_code == ExitCode.PROVIDER
    assert summary.stopped == "stopped after 5 failed attempts in a row; last: connection refused"
    assert len(script.batches) < 10
    counts = ledger_counts(config)
    assert set(counts) == {RETRY} and counts[RETRY] <= 20  # the batches that were tried
    script = Script()
    assert send(config, script).exit_code == ExitCode.OK
    assert sorted(script.accepted) == emails and set(script.accepted.values()) == {1}


def test_provider_error_stops_the_send_at_once_with_its_message(config, workspace):
    write_list(workspace, 100)

    class BadKey(ScriptedProvider):
        def send_batch(self, messages):
            self.script.batches.append((time.monotonic(), len(messages)))
            raise ProviderError("SendGrid refused the API key (401); check SENDGRID_API_KEY")

    script = Script()
    prepared = sending.prepare(config, config.issues_dir / "merge.md")
    with Ledger(config.state_dir / "ledger.sqlite3") as ledger:
        summary = sending.run(prepared, ledger, lambda: BadKey(script), FAST)
        assert summary.exit_code == ExitCode.PROVIDER
        assert summary.stopped == "SendGrid refused the API key (401); check SENDGRID_API_KEY"
        assert len(script.batches) <= FAST.workers
        assert set(ledger.counts("merge")["main"]) == {RETRY}  # nothing in flight, nothing failed


def test_an_unexpected_provider_exception_leaves_its_batch_unknown_and_is_raised(config, workspace):
    write_list(workspace, 5)

    class Buggy(ScriptedProvider):
        def send_batch(self, messages):
            raise RuntimeError("a bug")

    prepared = sending.prepare(config, config.issues_dir / "merge.md")
    with Ledger(config.state_dir / "ledger.sqlite3") as ledger:
        with pytest.raises(RuntimeError, match="a bug"):
            sending.run(prepared, ledger, lambda: Buggy(Script()), FAST)
        assert ledger.counts("merge") == {"main": {UNKNOWN: 5}}


def test_a_merge_field_that_fails_is_recorded_for_that_recipient_only(config, workspace):
    issue = workspace / "issues" / "vip.md"
    issue.write_text(
        "---\ntitle: VIP\npreheader: For our readers\n---\n\n"
        'Hello {{ subscriber.nickname if subscriber.vip is defined else "reader" }}.\n'
    )
    emails = write_list(
        workspace,
        8,
        extra=[
            {"email": "vip@example.org", "status": "subscribed", "vip": "yes", "nickname": "Chief"},
            {"email": "odd@example.org", "status": "subscribed", "vip": "yes"},
        ],
    )
    script = Script()
    summary = send(config, script, issue="vip.md")
    assert sorted(script.accepted) == sorted([*emails, "vip@example.org"])
    assert summary.failed == 1 and summary.exit_code == ExitCode.INCOMPLETE
    ((email, reason),) = summary.failures
    assert email == "odd@example.org"
    assert "has no value for odd@example.org" in reason
    row = ledger_rows(config, "vip")["odd@example.org"]
    assert (row.state, row.attempts) == (FAILED, 0)
    # Never handed over, so a later run evaluates it again.
    summary = send(config, Script(), issue="vip.md")
    assert summary.failed == 1 and summary.plan.failed == 0


def test_a_stop_ends_the_send_after_the_batch_in_flight(config, workspace):
    emails = write_list(workspace, 100)
    stop = threading.Event()

    def answer(message, attempt):
        if message.key == emails[25]:
            stop.set()  # Ctrl-C while the third batch is with the provider
        return Result(message.key, Status.ACCEPTED)

    settings = sending.Settings(workers=1, batch_size=10)
    script = Script(answer)
    summary = send(config, script, settings, stop=stop, total=100)
    assert summary.interrupted and summary.exit_code == ExitCode.INTERRUPTED
    assert summary.sent == 30 and summary.remaining == 70
    assert ledger_counts(config) == {SENT: 30}
    script2 = Script()
    assert send(config, script2).exit_code == ExitCode.OK
    assert not set(script.accepted) & set(script2.accepted)
    assert len(script2.accepted) == 70


def test_rate_caps_messages_per_second_across_workers(config, workspace):
    write_list(workspace, 60)
    script = Script()
    settings = sending.Settings(workers=4, batch_size=5, rate=100)
    started = time.monotonic()
    send(config, script, settings)
    assert time.monotonic() - started >= 0.5  # 60 messages at 100/s, the first batch at once
    assert len(script.accepted) == 60


def test_limit_sends_to_at_most_n_and_the_next_run_continues(config, workspace):
    emails = write_list(workspace, 20)
    script = Script()
    summary = send(config, script, sending.Settings(batch_size=10, limit=7))
    assert sorted(script.accepted) == emails[:7]
    assert summary.plan.over_limit == 13 and summary.exit_code == ExitCode.OK
    send(config, script)
    assert sorted(script.accepted) == emails and set(script.accepted.values()) == {1}


def test_dry_run_hands_nothing_over_and_writes_no_ledger(config, workspace):
    write_list(workspace, 15)
    script = Script()
    summary = send(config, script, sending.Settings(batch_size=10, dry_run=True))
    assert summary.dry_run and summary.sent == 15 and summary.exit_code == ExitCode.OK
    assert not script.batches
    assert not (config.state_dir / "ledger.sqlite3").exists()


def test_progress_reports_count_rate_and_eta(config, workspace):
    write_list(workspace, 50)
    seen: list[sending.Progress] = []
    send(config, Script(), on_progress=seen.append, total=50)
    assert seen[-1].done == seen[-1].sent == seen[-1].total == 50
    assert all(p.rate >= 0 for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert any(p.eta is not None for p in seen[:-1])


def test_test_send_goes_to_the_given_addresses_with_a_prefix_and_is_not_recorded(config, workspace):
    script = Script()
    prepared = sending.prepare(
        config,
        config.issues_dir / "merge.md",
        test_to=["editor@example.org", "Second@Example.org"],
        as_email="ada@example.org",
    )
    assert prepared.subject.startswith("[TEST] News for {{ subscriber.first_name")
    with sending.open_ledger(config, prepared) as ledger:
        summary = sending.run(prepared, ledger, script.provider, FAST)
    assert summary.sent == 2
    message = script.messages["second@example.org"]
    assert message.to_email == "Second@Example.org"
    assert message.subject == "[TEST] News for Ada"
    assert not (config.state_dir / "ledger.sqlite3").exists()


def test_send_refuses_an_issue_with_check_errors(config):
    with pytest.raises(sending.ChecksFailed, match="nothing was sent") as caught:
        sending.prepare(config, config.issues_dir / "problems" / "leftover.md")
    assert caught.value.exit_code == ExitCode.CHECKS_FAILED


def test_settings_come_from_options_then_config_then_provider(config):
    from newsletter.providers.smtp import SmtpProvider

    defaults = sending.settings_for(config, "smtp")
    assert (defaults.workers, defaults.batch_size, defaults.rate) == (
        SmtpProvider.default_workers,
        SmtpProvider.max_batch,
        SmtpProvider.default_rate,
    )
    chosen = sending.settings_for(config, "smtp", workers=2, rate=5.0, batch_size=1000)
    assert (chosen.workers, chosen.rate, chosen.batch_size) == (2, 5.0, SmtpProvider.max_batch)
    with pytest.raises(SendError, match="rate must be above 0"):
        sending.settings_for(config, "smtp", rate=0)


NOW = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)


def test_schedule_within_72_hours_becomes_send_at_for_sendgrid():
    when = sending.parse_when("2024-05-02T09:00+00:00")
    assert sending.schedule(when, "sendgrid", NOW).send_at == int(when.timestamp())


def test_schedule_beyond_72_hours_is_refused():
    with pytest.raises(SendError, match="more than 72 hours ahead"):
        sending.schedule(sending.parse_when("2024-05-04T09:01+00:00"), "sendgrid", NOW)


def test_schedule_with_a_provider_that_cannot_schedule_is_refused():
    with pytest.raises(SendError, match="provider smtp cannot schedule a send"):
        sending.schedule(sending.parse_when("2024-05-01T12:00+00:00"), "smtp", NOW)


class SchedulingProvider(ScriptedProvider):
    name = "scheduling"
    supports_send_at = True


def test_what_a_send_may_ask_of_a_provider_follows_its_declared_capabilities(monkeypatch):
    from newsletter.providers import PROVIDERS

    monkeypatch.setitem(PROVIDERS, "scheduling", f"{__name__}:SchedulingProvider")
    when = sending.parse_when("2024-05-01T12:00+00:00")
    assert sending.schedule(when, "scheduling", NOW).send_at == int(when.timestamp())
    assert sending.supports("scheduling", "send_at")
    assert not sending.supports("scheduling", "sandbox")
    assert sending.supports("sendgrid", "sandbox") and not sending.supports("smtp", "sandbox")


def test_schedule_in_the_past_is_now_within_grace_and_late_beyond_it():
    recent = sending.schedule(sending.parse_when("2024-05-01T08:55+00:00"), "smtp", NOW)
    assert recent == sending.Schedule(None, None)
    late = sending.schedule(sending.parse_when("2024-04-30T09:00+00:00"), "smtp", NOW)
    assert late.send_at is None and late.late_by == dt.timedelta(days=1)


def test_schedule_time_without_offset_is_local_time():
    when = sending.parse_when("2024-05-01T09:00")
    assert when.utcoffset() == dt.datetime(2024, 5, 1, 9, 0).astimezone().utcoffset()
    with pytest.raises(SendError, match="expected a date and time"):
        sending.parse_when("tomorrow")


def test_issue_slug_from_a_path_or_a_slug():
    assert sending.issue_slug("issues/2024-05-01 Spring.md") == "2024-05-01-spring"
    assert sending.issue_slug("2024-05-01-spring") == "2024-05-01-spring"


def test_ledger_rows_never_stay_in_flight_after_a_send(config, workspace):
    write_list(workspace, 35)

    def answer(message, attempt):
        status = [Status.ACCEPTED, Status.TEMPORARY, Status.REJECTED, Status.UNKNOWN][
            hash(message.key) % 4
        ]
        if status is Status.TEMPORARY and attempt > 1:
            status = Status.ACCEPTED
        return Result(message.key, status, "scripted")

    send(config, Script(answer))
    assert IN_FLIGHT not in ledger_counts(config)
