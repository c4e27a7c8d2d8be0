"""Sends on the PostgreSQL store: the shared plan, claims, leases, status, the send-wide rate.

Every test runs against the real PostgreSQL server of the session (conftest.pg_workspace).
"""

from __future__ import annotations

import collections
import re

import psycopg
import pytest
from loopback import SendgridServer
from pg_server import push_files, write_list
from test_send_cli import outbox, run

from newsletter.errors import ExitCode
from newsletter.sending.ledger import SENT

# Tests on pg_workspace find its lists in the store, as `newsletter store push` puts them.
pytestmark = pytest.mark.usefixtures("lists_pushed_when_on_postgres")

KEY = "SG.loopback-test-key.pg"


def states(url: str, issue: str = "merge") -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT email, state FROM send_recipients WHERE issue = %s", (issue,)
        ).fetchall()
    return dict(rows)


def test_a_send_on_postgresql_goes_to_the_outbox_and_is_recorded_there(pg_workspace, pg_url):
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == 0, result.output
    assert "Recipients: 2 (left out: 1 unsubscribed)" in result.output
    assert re.search(r"^Sent 2 in \d+ s\.$", result.output, re.M)
    assert sorted(m["To"] for m in outbox(pg_workspace)) == [
        "Ada Lovelace <ada@example.org>",
        "Grace Hopper <grace@example.net>",
    ]
    assert states(pg_url) == {"ada@example.org": SENT, "grace@example.net": SENT}
    assert not (pg_workspace / ".newsletter" / "ledger.sqlite3").exists()


def test_a_finished_issue_sends_nothing_the_second_time(pg_workspace, pg_url):
    assert run("send", "issues/merge.md", "--yes").exit_code == 0
    again = run("send", "issues/merge.md", "--yes")
    assert again.exit_code == 0, again.output
    assert "Recipients: 0 (left out: 2 already sent, 1 unsubscribed)" in again.output
    assert again.output.splitlines()[-1] == "Nothing to send."
    assert len(outbox(pg_workspace)) == 2


def test_status_shows_the_senders_and_their_progress(pg_workspace, pg_url):
    run("send", "issues/merge.md", "--yes")
    result = run("status", "issues/merge.md")
    assert result.exit_code == 0, result.output
    assert "list main: 2 sent" in result.output
    assert re.search(r"Senders:\n  #1 \S+ pid \d+ .* ok, 2 sent", result.output), result.output


def test_a_send_through_sendgrid_on_postgresql_reaches_everyone_once(pg_workspace, pg_url):
    emails = write_list(pg_workspace, 2500)
    with SendgridServer(api_key=KEY) as server:
        env = {
            "NEWSLETTER_SEND_PROVIDER": "sendgrid",
            "NEWSLETTER_SENDGRID_HOST": server.url,
            "SENDGRID_API_KEY": KEY,
            "NEWSLETTER_SEND_BATCH_SIZE": "300",
        }
        result = runner_with(env, "send", "issues/merge.md", "--yes")
        received = [d.to_email for d in server.deliveries()]
    assert result.exit_code == 0, result.output
    assert sorted(received) == emails
    assert collections.Counter(states(pg_url).values()) == {SENT: 2500}


def runner_with(env: dict[str, str], *args: str):
    from typer.testing import CliRunner

    from newsletter.cli import app

    return CliRunner().invoke(app, list(args), env=env)


def test_push_ledger_copies_the_files_ledger_once_and_a_send_then_sends_nobody_again(
    workspace, pg_url, monkeypatch
):
    from newsletter.config import load_config
    from newsletter.sending.pgpush import push_ledger
    from newsletter.store import migrations

    assert run("send", "issues/merge.md", "--yes").exit_code == 0  # on the files store
    monkeypatch.setenv("NEWSLETTER_STORE_URL", pg_url)
    config = load_config(workspace / "newsletter.toml")
    with psycopg.connect(pg_url) as conn:
        migrations.migrate(conn)
        first = push_ledger(conn, config)
        again = push_ledger(conn, config)
    push_files(workspace)  # the lists too, as `newsletter store push` does
    with psycopg.connect(pg_url) as conn:
        run_of = conn.execute(
            "SELECT count(*) FROM send_recipients r JOIN send_runs u ON u.id = r.run"
        ).fetchone()[0]
    assert first == "ledger: 1 run(s) and 2 recipient row(s) copied (0 already there)"
    assert again == "ledger: 0 run(s) and 0 recipient row(s) copied (2 already there)"
    assert run_of == 2  # each row points at its pushed run
    assert states(pg_url) == {"ada@example.org": SENT, "grace@example.net": SENT}
    result = run("send", "issues/merge.md", "--yes")
    assert "Recipients: 0 (left out: 2 already sent, 1 unsubscribed)" in result.output
    assert len(outbox(workspace)) == 2


def test_a_dry_run_on_postgresql_counts_against_the_shared_ledger_and_writes_nothing(
    pg_workspace, pg_url
):
    assert run("send", "issues/merge.md", "--yes", "--limit", "1").exit_code == 0
    result = run("send", "issues/merge.md", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Recipients: 1 (left out: 1 already sent, 1 unsubscribed)" in result.output
    assert len(outbox(pg_workspace)) == 1
    assert sorted(states(pg_url).values()) == ["planned", SENT]


def test_malformed_rows_are_recorded_invalid_and_status_names_them(pg_workspace, pg_url):
    extra = [{"email": "not-an-address", "name": "Bad", "status": "subscribed"}]
    write_list(pg_workspace, 3, extra=extra)
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == ExitCode.INCOMPLETE, result.output  # a row was skipped
    assert "main (PostgreSQL):5: invalid email address 'not-an-address'" in result.output
    assert len(outbox(pg_workspace)) == 3
    status = run("status", "issues/merge.md")
    assert "list main: 3 sent, 1 invalid" in status.output
    assert "main (PostgreSQL):5:" in status.output


def test_forget_keeps_only_the_hash_in_the_shared_ledger(pg_workspace, pg_url):
    from newsletter.config import load_config
    from newsletter.sending import shared

    run("send", "issues/merge.md", "--yes")
    with shared.open_ledger(load_config(pg_workspace / "newsletter.toml")) as ledger:
        assert ledger.forget("ada@example.org", "sha256:abc") == 1
        assert set(ledger.first_sent()) == {"merge"}
    assert states(pg_url) == {"sha256:abc": SENT, "grace@example.net": SENT}


def test_subscribers_forget_on_postgresql_erases_the_address_from_the_shared_ledger_and_web_events(
    pg_workspace, pg_url
):
    assert run("send", "issues/merge.md", "--yes").exit_code == 0
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO web_events (source, event_id, event, email, list) "
            "VALUES ('web', 'e1', 'unsubscribe', 'ada@example.org', 'main')"
        )
    result = run("subscribers", "forget", "ada@example.org", "--yes")
    assert result.exit_code == 0, result.output
    with psycopg.connect(pg_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM send_recipients WHERE email = 'ada@example.org' "
            "OR key = 'ada@example.org'"
        ).fetchone()[0]
        events = conn.execute("SELECT count(*) FROM web_events").fetchone()[0]
        hashed = conn.execute(
            "SELECT count(*) FROM send_recipients WHERE key LIKE 'sha256:%'"
        ).fetchone()[0]
    assert (left, events, hashed) == (0, 0, 1)


def test_a_segmented_send_on_postgresql_mails_only_the_segment_and_records_it(pg_workspace, pg_url):
    result = run("send", "issues/merge.md", "--yes", "--segment", 'name ~ "Ada"')
    assert result.exit_code == 0, result.output
    assert "1 outside the segment" in result.output
    assert [m["To"] for m in outbox(pg_workspace)] == ["Ada Lovelace <ada@example.org>"]
    assert states(pg_url) == {"ada@example.org": SENT}
    status = run("status", "issues/merge.md")
    assert 'list main (segment: name ~ "Ada"): 1 sent' in status.output
