"""Unsubscribes and provider events are kept when a list or the suppression file is malformed.

The running service records them durably first (the opt-out journal in .newsletter/), answers
200, and applies them to the files when they can be written; a real send never mails an
address that opted out, applied or not.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from test_serve import (
    ONE_CLICK,
    LiveServer,
    configure,
    confirmations,
    file_statuses,
    form_token,
    statuses,
    subscribe,
    wait_for,
)
from test_webhook import events_body, key_pair, signed, suppressions
from typer.testing import CliRunner

from newsletter.cli import app as cli_app
from newsletter.optouts import Journal
from newsletter.tokens import load_secret, make_token
from newsletter.web.events import EventStore

HEADER = "email,name,status,subscribed_at,updated_at,source,company\n"
ADA = "ada@example.org,Ada Lovelace,subscribed,,,import,Engines\n"
GRACE = "grace@example.net,Grace Hopper,subscribed,,,form,\n"
ALAN = "alan@example.com,,unsubscribed,,,import,\n"
# One structurally malformed row each: the whole file used to be unreadable for changes.
MALFORMED = {
    "extra column": "bad@example.com,Bad Row,subscribed,,,import,Acme,surplus\n",
    "unclosed quote": '"broken@example.com,Broken,subscribed,,,import,\n',
}


def write_list(root: Path, malformed: str) -> Path:
    """main.csv with the malformed row first: for an unclosed quote, nothing after it reads."""
    path = root / "subscribers" / "main.csv"
    path.write_text(HEADER + malformed + ADA + GRACE + ALAN, encoding="utf-8")
    return path


def fix_list(path: Path, malformed: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(malformed, ""), encoding="utf-8")


def send(root: Path, issue: str = "issues/merge.md") -> tuple[int, str, set[str]]:
    """`newsletter send ISSUE --yes` to the outbox: (exit code, output, everyone mailed so far)."""
    result = CliRunner().invoke(cli_app, ["send", issue, "--yes"])
    mailed = set()
    for path in (root / "outbox").glob("*/*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        mailed.add(str(message["To"].addresses[0].addr_spec))
    return result.exit_code, result.output, mailed


def journal(root: Path) -> Journal:
    return Journal(root / ".newsletter")


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_one_click_unsubscribe_on_a_malformed_list_is_kept_and_never_mailed(workspace, kind):
    malformed = MALFORMED[kind]
    path = write_list(workspace, malformed)
    secret = load_secret(workspace / ".newsletter", env={})
    link = f"/unsubscribe/{make_token(secret, 'main', 'ada@example.org')}"
    with LiveServer(configure(workspace)) as live, live.client() as client:
        page = client.get(link)
        answer = client.post(link, data=ONE_CLICK)
    assert page.status_code == 200 and "<button" in page.text
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    [entry] = journal(workspace).unsubscribes()
    assert (entry.list_name, entry.via, entry.applied_at) == ("main", "one-click", None)
    assert (workspace / ".newsletter" / "optouts.sqlite3").stat().st_mode & 0o777 == 0o600
    assert EventStore.for_workspace(workspace / ".newsletter").counts("web") == {"unsubscribe": 1}

    code, output, mailed = send(workspace)
    assert "ada@example.org" not in mailed
    if kind == "extra column":  # the send goes on without the bad row (issue 11, item 10)
        assert code == 6 and mailed == {"grace@example.net"}
        assert "subscribers/main.csv:2: 8 values but the header has 7 columns" in output
    else:  # after an unclosed quote nothing can be told apart: nobody is mailed
        assert code == 4 and mailed == set()
        assert "subscribers/main.csv:2: a quoted value starting on this line is never closed" in (
            output
        )

    fix_list(path, malformed)
    code, output, mailed = send(workspace)
    assert code == 0, output
    assert mailed == {"grace@example.net"}
    assert statuses(workspace)["ada@example.org"] == "unsubscribed"  # applied at last
    [entry] = journal(workspace).unsubscribes()
    assert entry.applied_at is not None and entry.key == "ada@example.org"


def test_page_form_unsubscribe_on_a_malformed_list_then_resubscribe_mails_again(workspace):
    malformed = MALFORMED["unclosed quote"]
    path = write_list(workspace, malformed)
    secret = load_secret(workspace / ".newsletter", env={})
    link = f"/unsubscribe/{make_token(secret, 'main', 'grace@example.net')}"
    with LiveServer(configure(workspace)) as live, live.client() as client:
        action, token = form_token(client.get(link).text)
        done = client.post(action, data={"csrf": token})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert [e.via for e in journal(workspace).unsubscribes()] == ["page"]
        action, token = form_token(done.text)
        back = client.post(action, data={"csrf": token})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert journal(workspace).unsubscribes() == []
    fix_list(path, malformed)
    code, output, mailed = send(workspace)
    assert code == 0, output
    assert mailed == {"ada@example.org", "grace@example.net"}


def test_unsubscribes_on_a_malformed_list_are_folded_in_by_the_next_list_write(workspace):
    # Was: test_unsubscribe_applies_to_the_list_row_once_it_can_be_written (serve applied the
    # journal to the file after answering; now serve never rewrites a list, issue 13).
    malformed = MALFORMED["extra column"]
    path = write_list(workspace, malformed)
    before = path.read_bytes()
    secret = load_secret(workspace / ".newsletter", env={})
    tokens = {a: make_token(secret, "main", a) for a in ("ada@example.org", "grace@example.net")}
    with LiveServer(configure(workspace)) as live, live.client() as client:
        for token in tokens.values():
            assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).is_success
    assert path.read_bytes() == before
    refused = CliRunner().invoke(cli_app, ["subscribers", "add", "new@example.com"])
    assert refused.exit_code != 0 and "main.csv:2" in refused.output
    fix_list(path, malformed)
    assert file_statuses(workspace)["ada@example.org"] == "subscribed"
    assert statuses(workspace)["ada@example.org"] == "unsubscribed"  # shown at once
    # The next command that writes the list folds them in.
    added = CliRunner().invoke(cli_app, ["subscribers", "add", "new@example.com"])
    assert added.exit_code == 0, added.output
    final = file_statuses(workspace)
    assert final["new@example.com"] == "subscribed"
    assert final["ada@example.org"] == final["grace@example.net"] == "unsubscribed"
    assert all(e.applied_at for e in journal(workspace).unsubscribes())


def test_an_address_that_unsubscribed_then_confirms_a_new_subscription_is_mailed_again(
    workspace,
):
    secret = load_secret(workspace / ".newsletter", env={})
    link = f"/unsubscribe/{make_token(secret, 'main', 'ada@example.org')}"
    with LiveServer(configure(workspace)) as live, live.client() as client:
        assert client.post(link, data=ONE_CLICK).status_code == 200
        assert statuses(workspace)["ada@example.org"] == "unsubscribed"
        assert subscribe(client, email="ada@example.org", list="main").status_code == 200
        [message] = wait_for(lambda: confirmations(workspace))
        text = message.get_body(("plain",)).get_content()
        confirm = re.search(r"https://news\.example\.org(/confirm/\S+)", text).group(1)
        page = client.get(confirm)
        if "<form" in page.text:  # confirming may take a press of a button
            action, token = form_token(page.text)
            page = client.post(action, data={"csrf": token})
        assert page.status_code == 200 and "You are subscribed" in page.text
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    assert journal(workspace).unsubscribes() == []
    code, output, mailed = send(workspace)
    assert code == 0, output
    assert mailed == {"ada@example.org", "grace@example.net"}


def test_add_resubscribe_takes_back_a_kept_unsubscribe(workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    link = f"/unsubscribe/{make_token(secret, 'main', 'ada@example.org')}"
    with LiveServer(configure(workspace)) as live, live.client() as client:
        assert client.post(link, data=ONE_CLICK).status_code == 200
    assert send(workspace)[2] == {"grace@example.net"}
    result = CliRunner().invoke(cli_app, ["subscribers", "add", "ada@example.org", "--resubscribe"])
    assert result.exit_code == 0, result.output
    assert journal(workspace).unsubscribes() == []
    code, output, mailed = send(workspace, "issues/sample.md")
    assert code == 0, output
    assert "ada@example.org" in mailed


def test_forget_removes_the_journal_entry_of_the_address(workspace):
    write_list(workspace, MALFORMED["extra column"])
    secret = load_secret(workspace / ".newsletter", env={})
    link = f"/unsubscribe/{make_token(secret, 'main', 'ada@example.org')}"
    with LiveServer(configure(workspace)) as live, live.client() as client:
        assert client.post(link, data=ONE_CLICK).status_code == 200
    path = workspace / "subscribers" / "main.csv"
    fix_list(path, MALFORMED["extra column"])
    result = CliRunner().invoke(cli_app, ["subscribers", "forget", "ada@example.org", "--yes"])
    assert result.exit_code == 0, result.output
    assert journal(workspace).unsubscribes() == []


# --- provider events by webhook -------------------------------------------------------------


def webhook_server(root: Path):
    private, public = key_pair()
    return private, LiveServer(configure(root, f'webhook_public_key = "{public}"'))


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_webhook_bounce_on_a_malformed_list_is_kept_and_never_mailed(workspace, kind):
    malformed = MALFORMED[kind]
    path = write_list(workspace, malformed)
    private, server = webhook_server(workspace)
    body = events_body({"event": "bounce", "email": "Ada@Example.org", "sg_event_id": "b1"})
    with server as live, live.client() as client:
        answer = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
    assert answer.status_code == 200 and answer.json() == {"received": 1, "new": 1}
    assert suppressions(workspace) == {"ada@example.org": "sendgrid: bounce"}

    code, output, mailed = send(workspace)
    assert "ada@example.org" not in mailed
    fix_list(path, malformed)
    code, output, mailed = send(workspace)
    assert code == 0, output
    assert mailed == {"grace@example.net"}
    assert statuses(workspace)["ada@example.org"] == "bounced"
    assert [a.applied_at is not None for a in journal(workspace).actions()] == [True]


def test_webhook_events_survive_a_malformed_suppression_file(workspace):
    folder = workspace / "subscribers"
    bad = "email,reason,at\nold@example.com,complaint,2024-01-01,surplus\n"
    (folder / "suppressions.csv").write_text(bad, encoding="utf-8")
    private, server = webhook_server(workspace)
    body = events_body(
        {"event": "spamreport", "email": "grace@example.net", "sg_event_id": "s1"},
        {"event": "bounce", "email": "ada@example.org", "sg_event_id": "b1"},
    )
    with server as live, live.client() as client:
        answer = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
        assert answer.status_code == 200 and answer.json() == {"received": 2, "new": 2}
        # The lists show it at once (the file is not rewritten); the suppressions wait.
        assert statuses(workspace)["grace@example.net"] == "complained"
        assert file_statuses(workspace)["grace@example.net"] == "subscribed"
        assert [a.applied_at for a in journal(workspace).actions()] == [None, None]
        (folder / "suppressions.csv").write_text(bad.replace(",surplus", ""), encoding="utf-8")
        # SendGrid's next delivery (here a replay of the same one) catches up.
        again = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
    assert again.status_code == 200 and again.json() == {"received": 2, "new": 0}
    assert suppressions(workspace) == {
        "old@example.com": "complaint",
        "grace@example.net": "sendgrid: spam report",
        "ada@example.org": "sendgrid: bounce",
    }
    # Was: every action marked applied here. The lists do not have them yet (serve does not
    # rewrite lists), so they stay pending until a send or a write of the lists folds them in.
    assert [a.applied_at for a in journal(workspace).actions()] == [None, None]
