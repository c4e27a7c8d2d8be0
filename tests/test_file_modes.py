"""Files that hold addresses are created 0600 (their folders 0700) under a normal umask;
a list file the tool rewrites keeps the mode it had."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app

REPO = Path(__file__).resolve().parent.parent
EXPORTS = REPO / "tests" / "fixtures" / "subscribers" / "exports"
runner = CliRunner()


@pytest.fixture(autouse=True)
def normal_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_a_send_creates_a_private_ledger_outbox_folder_and_messages(workspace):
    run("send", "issues/merge.md", "--yes")
    assert mode(workspace / ".newsletter" / "ledger.sqlite3") == 0o600
    assert mode(workspace / "outbox") == mode(workspace / "outbox" / "merge") == 0o700
    messages = list((workspace / "outbox" / "merge").glob("*.eml"))
    assert len(messages) == 2 and {mode(p) for p in messages} == {0o600}


def test_the_ledgers_wal_and_shm_files_are_private_while_it_is_open(workspace):
    from newsletter.sending.ledger import Ledger

    state = workspace / ".newsletter"
    with Ledger.for_workspace(state):
        files = {p.name: mode(p) for p in state.glob("ledger.sqlite3*")}
    assert files == {
        "ledger.sqlite3": 0o600,
        "ledger.sqlite3-wal": 0o600,
        "ledger.sqlite3-shm": 0o600,
    }
    assert mode(state) == 0o700


def test_an_unsubscribe_through_serve_keeps_the_list_mode_and_stores_events_privately(
    workspace,
):
    from test_serve import (
        ONE_CLICK,
        LiveServer,
        configure,
        send_issue,
        unsubscribe_url,
    )

    main = workspace / "subscribers" / "main.csv"
    main.chmod(0o640)
    message = send_issue(workspace, "issues/merge.md")["ada@example.org"]
    with LiveServer(configure(workspace)) as live, live.client() as client:
        answer = client.post(live.local(unsubscribe_url(message)), data=ONE_CLICK)
        assert answer.status_code == 200
        events = (workspace / ".newsletter").glob("events.sqlite3*")
        assert {p.name: mode(p) for p in events} == {
            "events.sqlite3": 0o600,
            "events.sqlite3-wal": 0o600,
            "events.sqlite3-shm": 0o600,
        }
    # serve keeps it in the journal; the next write of the list folds it in (issue 13).
    added = runner.invoke(app, ["subscribers", "add", "lin@example.com"])
    assert added.exit_code == 0, added.output
    assert "ada@example.org,Ada Lovelace,unsubscribed" in main.read_text()
    assert mode(main) == 0o640
    # The secret, the ledger, the opt-out journal, the event store: the owner's alone.
    state = workspace / ".newsletter"
    assert mode(state) == 0o700
    held = [p for p in state.iterdir() if p.is_file() and p.suffix != ".lock"]  # locks: empty
    assert {p.name: mode(p) for p in held} == {p.name: 0o600 for p in held}
    assert {"secret", "ledger.sqlite3", "optouts.sqlite3"} <= {p.name for p in state.iterdir()}


def test_import_creates_private_list_rejects_and_suppression_files(workspace, tmp_path):
    (workspace / "subscribers" / "main.csv").chmod(0o644)
    for name in ("substack_email_list.csv", "mailchimp_cleaned_members.csv"):
        (tmp_path / name).write_bytes((EXPORTS / name).read_bytes())
    run("subscribers", "import", str(tmp_path / "substack_email_list.csv"), "--list", "paid")
    run("subscribers", "import", str(tmp_path / "mailchimp_cleaned_members.csv"))
    subscribers = workspace / "subscribers"
    assert mode(subscribers / "paid.csv") == 0o600
    assert mode(subscribers / "suppressions.csv") == 0o600
    assert mode(tmp_path / "substack_email_list.rejects.csv") == 0o600
    assert mode(subscribers / "main.csv") == 0o644  # rewritten, mode as it was


def test_export_to_a_new_file_and_add_to_a_new_list_are_private(workspace, tmp_path):
    run("subscribers", "export", "--to", str(tmp_path / "out.csv"))
    run("subscribers", "add", "new@example.org", "--list", "fresh")
    assert mode(tmp_path / "out.csv") == 0o600
    assert mode(workspace / "subscribers" / "fresh.csv") == 0o600


def test_a_subscribers_folder_the_tool_creates_is_private(workspace):
    import shutil

    shutil.rmtree(workspace / "subscribers")
    run("subscribers", "add", "new@example.org")
    assert mode(workspace / "subscribers") == 0o700
    assert mode(workspace / "subscribers" / "main.csv") == 0o600
