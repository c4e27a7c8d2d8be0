"""`newsletter subscribers …` through the CLI runner: exact messages and exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"
runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, ["subscribers", *args], input=input)


def test_list_shows_every_list_with_counts_by_status(workspace):
    (workspace / "subscribers" / "other.csv").write_text("email,status\nx@example.org,bounced\n")
    (workspace / "subscribers" / "suppressions.csv").write_text("email,reason\ny@example.org,x\n")
    result = run("list")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "LIST   TOTAL  SUBSCRIBED  UNSUBSCRIBED  BOUNCED  COMPLAINED  PENDING\n"
        "main   3      2           1             0        0           0\n"
        "other  1      0           0             1        0           0\n"
        "1 suppressed address in subscribers/suppressions.csv (never mailed).\n"
    )


def test_list_with_a_name_pages_through_the_rows(workspace):
    result = run("list", "main", "--status", "subscribed", "--per-page", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "LINE  EMAIL            NAME          STATUS      SUBSCRIBED_AT\n"
        "2     ada@example.org  Ada Lovelace  subscribed  2024-01-01T00:00:00+00:00\n"
        "Rows 1-1 of 2 in main with status subscribed; next: --page 2.\n"
    )
    result = run("list", "main", "--status", "bounced")
    assert result.stdout == "No rows in main with status bounced on page 1 (0 in all).\n"


def test_count_prints_rows_by_status(workspace):
    result = run("count")
    assert result.exit_code == 0
    assert result.stdout == (
        "subscribed    2\nunsubscribed  1\nbounced       0\ncomplained    0\npending       0\n"
        "total         3\n"
    )


def test_add_and_remove_say_what_they_did(workspace):
    result = run("add", "new@example.org", "--name", "New Person", "--field", "company=ACME")
    assert (result.exit_code, result.stdout) == (0, "Added new@example.org to main.\n")
    result = run("add", "NEW@example.org", "--field", "company=ACME")
    assert result.stdout == "NEW@example.org is already in main; nothing changed.\n"
    result = run("add", "new@example.org", "--field", "city=Oslo", "--list", "main")
    assert result.stdout == "Updated new@example.org in main.\n"
    result = run("remove", "new@example.org")
    assert (result.exit_code, result.stdout) == (
        0,
        "Unsubscribed new@example.org from main (the row is kept).\n",
    )
    result = run("remove", "new@example.org")
    assert result.stdout == "new@example.org is already unsubscribed in main; nothing changed.\n"
    row = (workspace / "subscribers" / "main.csv").read_text().splitlines()[-1]
    assert row.startswith("new@example.org,New Person,unsubscribed,") and row.endswith(
        ",cli,ACME,Oslo"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("add", "foo@"),
            "Error: invalid email address 'foo@': There must be something after the @-sign.\n",
        ),
        (
            ("add", "alan@example.com"),
            "Error: alan@example.com is unsubscribed in list 'main' (line 4); "
            "add --resubscribe if they asked to be subscribed again\n",
        ),
        (("remove", "nobody@example.org"), "Error: nobody@example.org is not in list 'main'\n"),
        (
            ("list", "../main"),
            "Error: invalid list name '../main': use letters, digits, '-' and '_' "
            "(a list is the file subscribers/NAME.csv)\n",
        ),
        (
            ("count", "nope"),
            "Error: no list 'nope': subscribers/nope.csv does not exist (lists: main)\n",
        ),
    ],
)
def test_refusals_are_one_line_with_exit_code_4(workspace, args, message):
    result = run(*args)
    assert (result.exit_code, result.stderr, result.stdout) == (4, message, "")


def test_a_field_without_a_value_is_a_usage_error(workspace):
    result = run("add", "x@example.org", "--field", "company")
    assert result.exit_code == 2
    assert "expected KEY=VALUE, got 'company'" in result.stderr


def test_forget_asks_first_then_erases_everywhere(workspace):
    result = run("forget", "ada@example.org", input="n\n")
    assert result.exit_code == 1
    assert "ada@example.org" in (workspace / "subscribers" / "main.csv").read_text()
    result = run("forget", "ada@example.org", input="y\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "Erased ada@example.org: 1 row from main.\n"
        "Only its hash is kept, in subscribers/suppressions.csv, "
        "so it is never imported or added again.\n"
    )
    result = run("forget", "ada@example.org", "--yes")
    assert result.stdout.startswith("ada@example.org was in no list.\n")


def test_import_prints_counts_and_where_the_rejects_went(workspace, tmp_path):
    export = tmp_path / "substack_email_list.csv"
    shutil.copyfile(FIXTURES / "exports" / export.name, export)
    result = run("import", str(export))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Imported {export} into main (substack format): "
        "3 added, 0 updated, 0 unchanged, 2 rejected.\n"
        "Ignored columns: expiry, first_payment_at.\n"
    )
    assert result.stderr == (
        f"{export}:5: duplicate of line 4\n"
        f"{export}:6: invalid email address 'not-a-mail': An email address must have an @-sign.\n"
        f"Rejected rows written to {tmp_path / 'substack_email_list.rejects.csv'}: "
        "fix them and import that file.\n"
    )


def test_import_with_map_and_format(workspace, tmp_path):
    export = tmp_path / "semicolons.csv"
    shutil.copyfile(FIXTURES / "exports" / export.name, export)
    result = run("import", str(export), "--list", "de", "--format", "csv", "--map", "city=")
    assert result.exit_code == 0, result.output
    assert "2 added, 0 updated, 0 unchanged, 0 rejected." in result.stdout
    assert "Ignored columns: city." in result.stdout
    assert run("import", str(export), "--format", "nope").exit_code == 2


def test_import_of_a_malformed_file_changes_nothing(workspace):
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    result = run("import", str(FIXTURES / "malformed" / "nul.csv"))
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: ") and result.stderr.endswith(
        "nul.csv:2: NUL byte: the file is binary or UTF-16; save it as CSV UTF-8\n"
    )
    assert (workspace / "subscribers" / "main.csv").read_bytes() == before


def test_export_writes_csv_to_stdout_or_a_file(workspace, tmp_path):
    result = run("export", "--status", "unsubscribed", "--status", "bounced")
    assert result.exit_code == 0
    assert result.stdout == (
        "email,name,status,subscribed_at,updated_at,source,company\n"
        "alan@example.com,,unsubscribed,2024-01-03T00:00:00+00:00,2024-01-04T00:00:00+00:00,import,\n"
    )
    target = tmp_path / "all.csv"
    result = run("export", "main", "--to", str(target))
    assert result.stdout == f"Exported 3 rows of main to {target}.\n"
    assert target.read_bytes() == (workspace / "subscribers" / "main.csv").read_bytes()


def test_validate_passes_a_clean_workspace(workspace):
    result = run("validate")
    assert (result.exit_code, result.stdout) == (0, "No problems in 1 list.\n")


def test_validate_prints_every_problem_and_exits_1(workspace):
    shutil.copyfile(FIXTURES / "lists" / "hand_edited.csv", workspace / "subscribers" / "hand.csv")
    result = run("validate", "hand")
    assert result.exit_code == 1
    assert result.stdout == (
        "subscribers/hand.csv:3: invalid email address 'not an address': "
        "An email address must have an @-sign.\n"
    )
    assert result.stderr == "1 problem found.\n"


def test_validate_warns_about_a_name_too_long_for_the_to_header_and_passes(workspace):
    path = workspace / "subscribers" / "main.csv"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"long@example.org,{'N' * 250},subscribed,,,import,\n")
    result = run("validate")
    assert result.exit_code == 0
    assert result.stdout == (
        "subscribers/main.csv:5: warning: the name is 250 characters long; "
        "messages show only its first 200 in the To header\n"
        "No problems in 1 list (1 warning).\n"
    )


def test_every_subscribers_command_has_an_example_in_its_help(workspace):
    for command in ("list", "count", "add", "remove", "forget", "import", "export", "validate"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert f"newsletter subscribers {command}" in result.stdout, command


def test_forget_also_erases_the_address_from_the_ledger_and_the_event_store(workspace):
    from newsletter.sending.ledger import Ledger
    from newsletter.web.events import EventStore, web_event

    state = workspace / ".newsletter"
    with Ledger.for_workspace(state) as ledger:
        ledger._db.execute(
            "INSERT INTO recipients (issue, key, list, email, state, first_at, updated_at)"
            " VALUES ('sample', 'ada@example.org', 'main', 'Ada@example.org', 'sent', 'now', 'now')"
        )
    store = EventStore.for_workspace(state)
    store.add([web_event("unsubscribe", "ada@example.org", "main")])
    store.close()

    result = CliRunner().invoke(app, ["subscribers", "forget", "ada@example.org", "--yes"])
    assert result.exit_code == 0, result.output
    assert (
        "Also erased from the send ledger (1 record, kept as the hash) and the event store (1 event)."
        in result.output
    )
    for path in (state / "ledger.sqlite3", state / "events.sqlite3"):
        import sqlite3

        dump = "\n".join(sqlite3.connect(path).iterdump()).lower()
        assert "ada@example.org" not in dump
    with Ledger.for_workspace(state) as ledger:
        assert ledger.counts("sample") == {"main": {"sent": 1}}
