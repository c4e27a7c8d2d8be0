"""Segments over CSV lists with tags and custom columns: count, list, send, preview, status."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.segments import SegmentError, compile_segment
from newsletter.sending.ledger import Ledger

runner = CliRunner()

LIST = (
    "email,name,status,subscribed_at,country,seats,tags\n"
    'ada@example.org,Ada Lovelace,subscribed,2025-06-01T00:00:00+00:00,UA,12,"python,rust"\n'
    'grace@example.net,Grace Hopper,subscribed,2026-02-01T00:00:00+00:00,UA,9,"python,paused"\n'
    "alan@example.com,Alan Turing,subscribed,2026-03-01T00:00:00+00:00,GB,100,python\n"
    "linus@example.com,,unsubscribed,2026-03-02T00:00:00+00:00,UA,1,python\n"
)


@pytest.fixture
def tagged(workspace: Path) -> Path:
    (workspace / "subscribers" / "main.csv").write_text(LIST)
    return workspace


def run(*args: str):
    return runner.invoke(app, list(args))


def outbox(workspace: Path, slug: str) -> list[str]:
    folder = workspace / "outbox" / slug
    messages = (
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in folder.glob("*.eml")
    )
    return sorted(m["To"].addresses[0].addr_spec for m in messages)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("country = ", "col 11: expected a value after '='"),
        ("tag:python and (country = UA", "col 16: '(' is never closed"),
        ("tag:python country = UA", "col 12: expected 'and' or 'or' before 'country'"),
        (
            "country UA",
            "col 9: expected an operator (= != < <= > >= ~) after 'country', found 'UA'",
        ),
        ('name = "Ada', 'col 8: the quoted value is never closed (a missing ")'),
        ("tag: python", "col 5: expected a tag name after 'tag:'"),
        ("a = 1)", "col 6: ')' without a matching '('"),
        ("not", "col 4: expected a column name, tag:NAME, 'not' or '(', found the end"),
        ("seats > 1; drop", "col 10: unexpected character ';'"),
    ],
)
def test_a_bad_segment_is_one_line_naming_the_column_of_the_mistake(text, message):
    with pytest.raises(SegmentError) as caught:
        compile_segment(text)
    assert str(caught.value) == f"--segment: {message}"


def test_a_segment_is_never_evaluated_as_python(tagged):
    result = run("subscribers", "count", "main", "--segment", '__import__("os") = 1')
    assert result.exit_code == 4
    assert result.output == (
        "Error: --segment: col 11: expected an operator (= != < <= > >= ~) after "
        "'__import__', found '('\n"
    )


def test_count_with_a_segment_counts_only_its_rows(tagged):
    result = run(
        "subscribers", "count", "--segment", 'tag:python and country = "UA" and not tag:paused'
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["subscribed    1", "unsubscribed  1"]
    result = run("subscribers", "count", "--segment", "subscribed_at >= 2026-01-01 and seats < 50")
    assert result.stdout.splitlines()[:2] == ["subscribed    1", "unsubscribed  1"]


def test_an_unknown_column_is_an_error_naming_the_lists_columns(tagged):
    result = run("subscribers", "list", "main", "--segment", "tag:python and contry = UA")
    assert result.exit_code == 4
    assert result.output.strip() == (
        "Error: --segment: col 16: unknown column 'contry' (the list's columns: email, name, "
        "status, subscribed_at, updated_at, source, country, seats)"
    )


def test_list_with_a_segment_shows_its_rows(tagged):
    result = run("subscribers", "list", "main", "--segment", "seats >= 10 or name ~ Grace")
    assert result.exit_code == 0, result.output
    emails = [line.split()[1] for line in result.stdout.splitlines()[1:-1]]
    assert emails == ["ada@example.org", "grace@example.net", "alan@example.com"]
    assert result.stdout.splitlines()[-1] == (
        "Rows 1-3 of 3 in main in segment seats >= 10 or name ~ Grace."
    )


def test_send_with_a_segment_mails_only_it_and_status_shows_it(tagged):
    result = run("send", "issues/merge.md", "--yes", "--segment", "tag:python and not tag:paused")
    assert result.exit_code == 0, result.output
    assert "Segment:    tag:python and not tag:paused" in result.output
    assert "Recipients: 2 (left out: 1 unsubscribed, 1 outside the segment)" in result.output
    assert outbox(tagged, "merge") == ["ada@example.org", "alan@example.com"]
    status = run("status", "issues/merge.md")
    assert "  list main (segment: tag:python and not tag:paused): 2 sent" in status.output
    with Ledger(tagged / ".newsletter" / "ledger.sqlite3") as book:
        assert book.segments("merge") == {"main": ["tag:python and not tag:paused"]}


def test_front_matter_segment_is_used_and_an_option_overrides_it(tagged):
    issue = tagged / "issues" / "merge.md"
    issue.write_text(issue.read_text().replace("---\n", "---\nsegment: country = GB\n", 1))
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == 0, result.output
    assert outbox(tagged, "merge") == ["alan@example.com"]
    result = run("send", "issues/merge.md", "--yes", "--segment", "tag:rust")
    assert outbox(tagged, "merge") == ["ada@example.org", "alan@example.com"]
    status = run("status", "issues/merge.md")
    assert "(segment: country = GB; tag:rust): 2 sent" in status.output


def test_a_bad_front_matter_segment_names_the_file_and_line(tagged):
    issue = tagged / "issues" / "merge.md"
    issue.write_text(issue.read_text().replace("---\n", "---\nsegment: country =\n", 1))
    result = run("preview", "issues/merge.md")
    assert result.exit_code == 4
    assert f"{Path('issues/merge.md')}:2: segment: col 10: expected a value after '='" in (
        result.output
    )


def test_preview_with_a_segment_is_as_its_first_reader_and_checks_as(tagged):
    result = run("preview", "issues/merge.md", "--segment", "country = GB")
    assert result.exit_code == 0, result.output
    html = (tagged / "build" / "merge" / "email.html").read_text()
    assert "Hi Alan" in html
    result = run(
        "preview", "issues/merge.md", "--as", "ada@example.org", "--segment", "country = GB"
    )
    assert result.exit_code == 4
    assert "ada@example.org is not in the segment 'country = GB'" in result.output


def test_a_ledger_from_before_segments_is_upgraded_and_keeps_its_rows(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, issue TEXT NOT NULL, list TEXT NOT NULL, "
        "provider TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT);"
        "CREATE TABLE recipients (issue TEXT NOT NULL, key TEXT NOT NULL, list TEXT NOT NULL, "
        "email TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "provider_id TEXT, run INTEGER, batch INTEGER, first_at TEXT NOT NULL, "
        "updated_at TEXT NOT NULL, sent_at TEXT, error TEXT, PRIMARY KEY (issue, key)) WITHOUT ROWID;"
        "INSERT INTO runs (issue, list, provider, started_at) VALUES ('old', 'main', 'smtp', 'x');"
        "INSERT INTO recipients VALUES ('old', 'a@example.org', 'main', 'a@example.org', 'sent', "
        "1, NULL, 1, 0, 'x', 'x', 'x', NULL);"
        "PRAGMA user_version = 1;"
    )
    old.close()
    with Ledger(path) as book:
        assert book.counts("old") == {"main": {"sent": 1}}
        book.start_run("new", "main", "smtp", "tag:python")
        assert book.segments("old") == {"main": [""]}
        assert book.segments("new") == {"main": ["tag:python"]}
    with Ledger(path) as again:  # opening an upgraded file again changes nothing
        assert again.segments("new") == {"main": ["tag:python"]}
