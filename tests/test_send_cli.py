"""`newsletter send` and `newsletter status` through the CLI runner: exit codes and exact text."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from loopback import SendgridServer
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.sending.ledger import FAILED, SENT, UNKNOWN, Ledger, Outcome

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def outbox(workspace: Path, slug: str = "merge") -> list[email.message.EmailMessage]:
    folder = workspace / "outbox" / slug
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def test_send_without_a_terminal_or_yes_refuses(workspace):
    result = run("send", "issues/merge.md")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: not on a terminal: pass --yes to send without being asked"
    )
    assert "Recipients: 2 (left out: 1 unsubscribed)" in result.output
    assert not (workspace / "outbox").exists()


def test_send_yes_sends_shows_the_plan_and_a_summary(workspace):
    # With --yes nobody is asked: the recipients are counted by the send itself, not by a
    # pass over the list before it, and their line comes once the send is over.
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("sent ")]
    assert lines[:5] == [
        f"Issue:      {Path('issues/merge.md')}",
        "Subject:    News for {{ subscriber.first_name | default('you') }}",
        "List:       main",
        "Provider:   outbox (1 worker, no rate cap)",
        "Recipients: 2 (left out: 1 unsubscribed)",
    ]
    assert lines[5].startswith("Sent 2 in ")  # counted by the send, shown once it is over
    assert "sent 2, done 2, " in result.output  # its progress: no total known before
    assert re.search(r"^Sent 2 in \d+ s\.$", result.output, re.M)
    assert "Left out: 1 unsubscribed." in result.output
    assert f"Messages:   {Path('outbox/merge')}/ (one .eml file per recipient)" in result.output
    assert sorted(m["To"] for m in outbox(workspace)) == [
        "Ada Lovelace <ada@example.org>",
        "Grace Hopper <grace@example.net>",
    ]


def test_sending_again_sends_nothing_and_says_so(workspace):
    run("send", "issues/merge.md", "--yes")
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == 0
    assert "Recipients: 0 (left out: 2 already sent, 1 unsubscribed)" in result.output
    assert result.output.splitlines()[-1] == "Nothing to send."


def test_send_refuses_an_issue_with_check_errors(workspace):
    result = run("send", "issues/problems/leftover.md", "--yes")
    assert result.exit_code == 1
    assert result.output.startswith("Error: the issue has ")
    assert "nothing was sent" in result.output
    assert not (workspace / "outbox").exists()


def test_dry_run_says_what_would_happen_and_sends_nothing(workspace):
    result = run("send", "issues/merge.md", "--dry-run")
    assert result.exit_code == 0, result.output
    assert re.search(r"^Would send 2 in \d+ s\.$", result.output, re.M)
    assert not (workspace / "outbox").exists()
    assert not (workspace / ".newsletter" / "ledger.sqlite3").exists()


def test_test_send_sends_a_test_copy_with_the_fields_of_a_subscriber(workspace):
    result = run(
        "send", "issues/merge.md", "--test-to", "me@example.org", "--as", "ada@example.org"
    )
    assert result.exit_code == 0, result.output
    assert "List:       (test send)" in result.output
    (message,) = outbox(workspace)
    assert message["To"] == "Ada Lovelace <me@example.org>"
    assert message["Subject"] == "[TEST] News for Ada"
    assert "Hi Ada from Engines & <Co>," in message.get_body("plain").get_content()
    # Not a send of the issue: the real send still goes to everyone.
    assert run("status", "issues/merge.md").output == "No sends of merge are recorded.\n"


def test_test_send_without_as_uses_defaults(workspace):
    result = run("send", "issues/merge.md", "--test-to", "me@example.org")
    assert result.exit_code == 0, result.output
    (message,) = outbox(workspace)
    assert message["Subject"] == "[TEST] News for you"


def test_failed_test_send_says_to_rerun_the_test_send_not_the_real_one(workspace):
    key = "SG.loopback-test-key.cli"
    with SendgridServer(api_key=key) as server:
        env = {
            "NEWSLETTER_SEND_PROVIDER": "sendgrid",
            "NEWSLETTER_SENDGRID_HOST": server.url,
            "SENDGRID_API_KEY": "SG.revoked-key",
        }
        args = ["--test-to", "me@example.org", "--test-to", "you@example.org"]
        result = runner.invoke(app, ["send", "issues/merge.md", *args], env=env)
        assert server.requests == []
    assert result.exit_code == 5, result.output
    assert result.stderr.splitlines()[-2:] == [
        "Stopped: SendGrid refused the API key (401): check SENDGRID_API_KEY",
        "Not sent yet: 2. A test send is not recorded, so it does not resume: run "
        "`newsletter send issues/merge.md --test-to me@example.org --test-to you@example.org` "
        "again to send every test copy again.",
    ]
    assert "again to resume" not in result.output
    assert "newsletter status" not in result.output


def test_as_needs_test_to(workspace):
    result = run("send", "issues/merge.md", "--as", "ada@example.org")
    assert result.exit_code == 2
    assert result.output == "Error: --as only applies to a test send: add --test-to ADDRESS\n"


def test_sandbox_with_a_provider_that_has_none_is_refused(workspace):
    result = run("send", "issues/merge.md", "--sandbox", "--yes")
    assert result.exit_code == 2
    assert (
        result.output
        == "Error: --sandbox needs a provider with a sandbox mode (sendgrid or postmark or mailgun); outbox has none\n"
    )


def test_at_with_a_provider_that_cannot_schedule_is_refused(workspace):
    result = run("send", "issues/merge.md", "--at", "2999-01-01T09:00", "--yes")
    assert result.exit_code == 2
    assert "provider outbox cannot schedule a send" in result.output


def test_at_long_past_is_not_sent_late_without_asking(workspace):
    result = run("send", "issues/merge.md", "--at", "2020-01-01T09:00+00:00", "--yes")
    assert result.exit_code == 2
    assert re.fullmatch(
        r"Error: --at 2020-01-01T09:00\+00:00 was \d+ h \d\d min ago: not sending late "
        r"without asking; drop --at to send now\n",
        result.output,
    )
    assert not (workspace / "outbox").exists()


def test_bad_rate_is_a_usage_error(workspace):
    result = run("send", "issues/merge.md", "--rate", "0", "--yes")
    assert result.exit_code == 2
    assert result.output == "Error: the rate must be above 0 messages per second, not 0.0\n"


def test_unknown_provider_is_a_config_error(workspace):
    result = run("send", "issues/merge.md", "--provider", "carrier-pigeon", "--yes")
    assert result.exit_code == 3
    assert result.output.startswith("Error: unknown provider 'carrier-pigeon'")


def test_sendgrid_without_a_key_fails_before_anything_is_sent(workspace):
    result = run("send", "issues/merge.md", "--provider", "sendgrid", "--yes")
    assert result.exit_code == 3
    assert result.output.startswith("Error: SENDGRID_API_KEY is not set")


def test_unknown_recipients_are_listed_and_make_the_send_incomplete(workspace):
    with Ledger(workspace / ".newsletter" / "ledger.sqlite3") as ledger:
        run_id = ledger.start_run("merge", "main", "outbox")
        ledger.mark_in_flight("merge", "main", run_id, 1, [("ada@example.org", "ada@example.org")])
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == 6, result.output
    assert "  ada@example.org: the send stopped before the provider answered" in result.output
    assert "Recipients: 1 (left out: 1 unsubscribed, 1 unknown)" in result.output
    assert [m["To"] for m in outbox(workspace)] == ["Grace Hopper <grace@example.net>"]
    result = run("send", "issues/merge.md", "--yes", "--resend-unknown")
    assert result.exit_code == 0, result.output
    assert len(outbox(workspace)) == 2


def record_a_send(workspace: Path) -> None:
    with Ledger(workspace / ".newsletter" / "ledger.sqlite3") as ledger:
        run_id = ledger.start_run("merge", "main", "smtp")
        pairs = [("ada@example.org", "ada@example.org"), ("grace@example.net", "grace@example.net")]
        ledger.mark_in_flight("merge", "main", run_id, 1, pairs)
        ledger.mark_in_flight("merge", "vip", run_id, 2, [("bob@example.com", "bob@example.com")])
        ledger.record(
            "merge",
            [
                Outcome("ada@example.org", SENT, "id-1"),
                Outcome("grace@example.net", FAILED, error="550 5.1.1 no such user"),
                Outcome("bob@example.com", UNKNOWN, error="connection lost"),
            ],
        )


def test_status_shows_counts_per_list_and_the_failures(workspace):
    record_a_send(workspace)
    result = run("status", "issues/merge.md")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "merge\n"
        "  list main: 1 sent, 1 failed\n"
        "  list vip: 1 unknown\n"
        "Failed:\n"
        "  grace@example.net: 550 5.1.1 no such user\n"
        "Unknown:\n"
        "  bob@example.com: connection lost\n"
    )


def test_status_recipients_lists_every_recipient(workspace):
    record_a_send(workspace)
    result = run("status", "merge", "--recipients")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.splitlines()[3:]]
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        ("main", "ada@example.org", "sent", "1", ""),
        ("vip", "bob@example.com", "unknown", "1", "connection lost"),
        ("main", "grace@example.net", "failed", "1", "550 5.1.1 no such user"),
    ]


def test_status_of_an_issue_never_sent(workspace):
    result = run("status", "issues/sample.md")
    assert result.exit_code == 0
    assert result.output == "No sends of sample are recorded.\n"


def test_send_and_status_have_help_with_an_example():
    for command in ("send", "status"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example: newsletter " + command in result.output


def test_readme_section_documents_every_send_option():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    help_text = run("send", "--help").output
    options = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help", "--config"}
    missing = sorted(o for o in options if o not in readme)
    assert not missing, f"README.md does not mention {missing}"
    assert "newsletter status" in readme


def test_progress_without_a_terminal_is_a_plain_line_every_few_seconds(capsys):
    from newsletter.cli.show import Reporter
    from newsletter.sending import Progress

    with Reporter(100, tty=False) as report:
        report(Progress(100, 50, 48, 2, 2.0))
        report(Progress(100, 60, 58, 2, 2.4))  # within a few seconds of the last line: quiet
        report(Progress(100, 100, 98, 2, 4.0))  # the last one always shows
    assert capsys.readouterr().err.splitlines() == [
        "sent 48, done 50 of 100 (50%), 25/s, 2 s left",
        "sent 98, done 100 of 100 (100%), 25/s",
    ]


def test_progress_on_a_terminal_is_a_bar_with_count_rate_and_eta():
    import threading

    from newsletter.cli.show import Reporter
    from newsletter.sending import Progress

    alone = threading.active_count()
    with Reporter(100, tty=True) as report:
        # No refresh thread: the send forks its read-ahead process with the bar showing.
        assert threading.active_count() == alone
        report(Progress(100, 40, 40, 0, 2.0))
        task = report.bar.tasks[0]
        assert (task.completed, task.total) == (40, 100)
        assert task.fields == {"speed": "20/s", "eta": "3 s left"}


def test_plan_names_workers_in_proper_plural(workspace):
    result = run("send", "issues/merge.md", "--yes", "--workers", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Provider:   outbox (2 workers, no rate cap)" in result.output


def test_a_dry_run_to_the_outbox_names_no_folder(workspace):
    result = run("send", "issues/merge.md", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Messages:" not in result.output
    assert not (workspace / "outbox").exists()


def test_a_test_send_to_the_outbox_says_where_the_files_went(workspace):
    result = run("send", "issues/merge.md", "--test-to", "me@example.org")
    assert result.exit_code == 0, result.output
    assert f"Messages:   {Path('outbox/merge')}/ (one .eml file per recipient)" in result.output


def test_a_send_counts_its_recipients_before_anything_goes_unless_nobody_is_asked(workspace):
    from newsletter.config import load_config
    from newsletter.sending import flow

    config = load_config(workspace / "newsletter.toml")
    seen = []

    def approve(prepared, plan, settings, ledger):
        seen.append((plan.to_send if plan else None, len(outbox(workspace))))
        return None

    flow.send(config, workspace / "issues" / "merge.md", approve=approve)
    sent = flow.send(config, workspace / "issues" / "merge.md", approve=approve, count_first=False)
    # Counted first: 2 to send, none sent yet. Not counted: the second send's own pass
    # counts what it found, nobody left (both already sent).
    assert seen == [(2, 0), (None, 2)]
    assert not sent.counted
    assert (sent.summary.plan.to_send, sent.summary.plan.already_sent) == (0, 2)
    assert sent.summary.plan.left_out == {"unsubscribed": 1}
