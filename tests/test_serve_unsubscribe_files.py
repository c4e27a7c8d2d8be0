"""On the files store, serve never rewrites a list for an unsubscribe or a provider event.

They are kept in the opt-out journal (a row, whatever the list's size); `subscribers count`,
`list` and `export` show them at once, and the next command that writes the list folds them
into the CSV under the list's lock (issue 13).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from test_serve import ONE_CLICK, LiveServer, configure, file_statuses
from test_webhook import events_body, key_pair, signed
from typer.testing import CliRunner

from newsletter.cli import app as cli_app
from newsletter.optouts import Journal
from newsletter.tokens import load_secret, make_token


def cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def counts(output: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in output.splitlines() if line.strip()}


def unsubscribe(root: Path, *addresses: str) -> None:
    secret = load_secret(root / ".newsletter", env={})
    with LiveServer(configure(root)) as live, live.client() as client:
        for address in addresses:
            link = f"/unsubscribe/{make_token(secret, 'main', address)}"
            assert client.post(link, data=ONE_CLICK).status_code == 200


def test_a_web_unsubscribe_shows_in_count_list_and_export_at_once_and_the_list_is_not_rewritten(
    workspace,
):
    path = workspace / "subscribers" / "main.csv"
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    unsubscribe(workspace, "ada@example.org")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp

    assert counts(cli("subscribers", "count", "main"))["unsubscribed"] == 2
    listed = cli("subscribers", "list", "main", "--status", "unsubscribed")
    assert "ada@example.org" in listed and "grace@example.net" not in listed
    exported = cli("subscribers", "export", "main", "--status", "subscribed")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["email"] for r in rows] == ["grace@example.net"]
    everything = cli("subscribers", "export", "main")
    ada = next(r for r in csv.DictReader(io.StringIO(everything)) if r["email"].startswith("ada"))
    assert (ada["status"], ada["source"]) == ("unsubscribed", "web:one-click")
    overview = cli("subscribers", "list")
    assert overview.splitlines()[1].split()[:4] == ["main", "3", "1", "2"]  # total, sub, unsub
    assert path.read_bytes() == before


def test_the_next_subscribers_add_folds_kept_unsubscribes_into_the_list(workspace):
    unsubscribe(workspace, "ada@example.org", "grace@example.net")
    assert file_statuses(workspace)["ada@example.org"] == "subscribed"
    cli("subscribers", "add", "lin@example.com", "--list", "main")
    assert file_statuses(workspace) == {
        "ada@example.org": "unsubscribed",
        "grace@example.net": "unsubscribed",
        "alan@example.com": "unsubscribed",
        "lin@example.com": "subscribed",
    }
    entries = Journal(workspace / ".newsletter").unsubscribes()
    assert len(entries) == 2 and all(e.applied_at for e in entries)  # kept, marked folded
    assert counts(cli("subscribers", "count", "main"))["unsubscribed"] == 3


def test_an_import_folds_kept_unsubscribes_and_does_not_undo_them(workspace):
    unsubscribe(workspace, "ada@example.org")
    incoming = workspace / "more.csv"
    incoming.write_text("email,name\nada@example.org,Ada\nnew@example.com,New\n", encoding="utf-8")
    cli("subscribers", "import", str(incoming), "--list", "main")
    final = file_statuses(workspace)
    assert final["ada@example.org"] == "unsubscribed" and final["new@example.com"] == "subscribed"


def test_a_webhook_bounce_shows_in_count_at_once_and_the_list_is_not_rewritten(workspace):
    private, public = key_pair()
    path = workspace / "subscribers" / "main.csv"
    before = path.read_bytes()
    body = events_body({"event": "bounce", "email": "grace@example.net", "sg_event_id": "b1"})
    server = LiveServer(configure(workspace, f'webhook_public_key = "{public}"'))
    with server as live, live.client() as client:
        answer = client.post("/webhooks/sendgrid", content=body, headers=signed(private, body))
    assert answer.status_code == 200
    assert path.read_bytes() == before
    assert counts(cli("subscribers", "count", "main"))["bounced"] == 1
    cli("subscribers", "remove", "ada@example.org", "--list", "main")
    final = file_statuses(workspace)
    assert final["grace@example.net"] == "bounced" and final["ada@example.org"] == "unsubscribed"
